//! Reading one mail report: a delivery status notification (RFC 3464), a complaint
//! (ARF, RFC 5965), an auto-reply (RFC 3834 and the usual vacation subjects), or none of
//! these. MIME is parsed by `mailparse`; what is ours is which fields say what, and where
//! the report names the message it is about.

use mailparse::{MailHeaderMap, ParsedMail};

/// What kind of report a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A DSN: one entry per recipient it reports on (successes are left out).
    Bounce(Vec<Failure>),
    /// An abuse report: the person marked the message as spam (`Feedback-Type` says which).
    Complaint { feedback_type: String },
    /// An out-of-office or other automatic answer: neither a bounce nor a complaint.
    AutoReply,
    /// A DSN or an ARF report that reports nothing to act on (delivered, relayed,
    /// `not-spam`), or a message that is no report at all.
    Other,
}

/// One recipient a DSN reports as not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Permanent (`failed` with a 5.x.x status) or transient (4.x.x, or `delayed`).
    pub hard: bool,
    /// The enhanced status code (`5.1.1`); empty when the DSN gives none.
    pub status: String,
    /// `Final-Recipient` (or `Original-Recipient`) without its address type.
    pub recipient: Option<String>,
    /// The remote server's words (`Diagnostic-Code`), for the record.
    pub diagnostic: Option<String>,
}

/// A parsed report and the places in it that may name the message it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: Kind,
    /// Addresses the report was sent to or quotes as the original envelope sender
    /// (`Delivered-To`, `X-Original-To`, `To`, a quoted `Return-Path`, ARF's
    /// `Original-Mail-From`): where a VERP address shows up.
    pub addresses: Vec<String>,
    /// The `List-Unsubscribe` header of the quoted original message, when quoted: its
    /// signed link names the delivery even without VERP.
    pub quoted_unsubscribe: Option<String>,
    /// The quoted original's `Message-ID`, for logs.
    pub quoted_message_id: Option<String>,
}

/// Why a message could not be read as mail at all.
#[derive(Debug, thiserror::Error)]
#[error("not a readable mail message: {0}")]
pub struct ReportError(String);

impl ReportError {
    /// The parser gave up unexpectedly (kept apart so that one bad message never stops
    /// the intake).
    pub(crate) fn panicked() -> ReportError {
        ReportError("the parser stopped on it".into())
    }
}

/// Subjects of automatic answers that do not say so in their headers, lower-cased prefixes.
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto:",
    "away from the office",
    "on vacation",
    "vacation reply",
    "abwesenheitsnotiz",
    "réponse automatique",
    "respuesta automática",
];

/// Reads one message.
pub fn parse(raw: &[u8]) -> Result<Report, ReportError> {
    let mail = mailparse::parse_mail(raw).map_err(|e| ReportError(e.to_string()))?;
    // RFC 5322 field names: printable ASCII without spaces or colons.
    let field_name =
        |k: &[u8]| !k.is_empty() && k.iter().all(|b| (33..=126).contains(b) && *b != b':');
    if mail.headers.is_empty() || !mail.headers.iter().all(|h| field_name(h.get_key_raw())) {
        return Err(ReportError(
            "it does not start with header fields (Name: value lines)".into(),
        ));
    }
    let mut report = Report {
        kind: Kind::Other,
        addresses: Vec::new(),
        quoted_unsubscribe: None,
        quoted_message_id: None,
    };
    for name in ["Delivered-To", "X-Original-To", "Envelope-To", "To"] {
        for v in mail.headers.get_all_values(name) {
            report.addresses.extend(addresses_in(&v));
        }
    }
    let report_type = (mail.ctype.mimetype == "multipart/report")
        .then(|| mail.ctype.params.get("report-type").cloned())
        .flatten()
        .map(|t| t.to_ascii_lowercase());
    let mut parts = Vec::new();
    flatten(&mail, &mut parts);
    for part in &parts {
        match part.ctype.mimetype.as_str() {
            "message/rfc822"
            | "text/rfc822-headers"
            | "message/rfc822-headers"
            | "message/global"
            | "message/global-headers" => quoted(part, &mut report),
            _ => {}
        }
    }
    let field_part = |types: &[&str]| {
        parts
            .iter()
            .find(|p| types.contains(&p.ctype.mimetype.as_str()))
            .and_then(|p| p.get_body_raw().ok())
    };
    report.kind = match report_type.as_deref() {
        Some("delivery-status") => {
            match field_part(&["message/delivery-status", "message/global-delivery-status"]) {
                Some(body) => Kind::Bounce(failures(&body)),
                None => Kind::Other,
            }
        }
        Some("feedback-report") => match field_part(&["message/feedback-report"]) {
            Some(body) => complaint(&body, &mut report.addresses),
            None => Kind::Other,
        },
        _ if auto_reply(&mail) => Kind::AutoReply,
        _ => Kind::Other,
    };
    Ok(report)
}

/// Every part of a message, depth first (the message itself first).
fn flatten<'a>(mail: &'a ParsedMail<'a>, out: &mut Vec<&'a ParsedMail<'a>>) {
    out.push(mail);
    for p in &mail.subparts {
        flatten(p, out);
    }
}

/// Reads the quoted original's headers: its envelope sender, List-Unsubscribe, Message-ID.
fn quoted(part: &ParsedMail<'_>, report: &mut Report) {
    let Ok(body) = part.get_body_raw() else {
        return;
    };
    let Ok((headers, _)) = mailparse::parse_headers(&body) else {
        return;
    };
    for v in headers.get_all_values("Return-Path") {
        report.addresses.extend(addresses_in(&v));
    }
    if report.quoted_unsubscribe.is_none() {
        report.quoted_unsubscribe = headers.get_first_value("List-Unsubscribe");
    }
    if report.quoted_message_id.is_none() {
        report.quoted_message_id = headers
            .get_first_value("Message-ID")
            .map(|m| m.trim().trim_matches(['<', '>']).to_string());
    }
}

/// The blocks of a `message/delivery-status` body: the per-message fields, then one block
/// per recipient, separated by blank lines; each is parsed as header fields.
fn field_blocks(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter_map(|b| {
            let (headers, _) = mailparse::parse_headers(b.trim_start().as_bytes()).ok()?;
            Some(
                headers
                    .iter()
                    .map(|h| (h.get_key().to_ascii_lowercase(), h.get_value()))
                    .collect(),
            )
        })
        .collect()
}

fn field<'a>(block: &'a [(String, String)], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The recipients a DSN reports as failed or delayed.
fn failures(body: &[u8]) -> Vec<Failure> {
    field_blocks(body)
        .iter()
        .filter_map(|block| {
            let action = field(block, "action")?.to_ascii_lowercase();
            let status = field(block, "status")
                .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
                .unwrap_or_default();
            let class = status.chars().next();
            let hard = match action.as_str() {
                "failed" => class != Some('4'),
                "delayed" => false,
                _ => return None,
            };
            let recipient = field(block, "final-recipient")
                .or_else(|| field(block, "original-recipient"))
                .map(|r| r.split_once(';').map_or(r, |(_, a)| a).trim().to_string());
            Some(Failure {
                hard,
                status,
                recipient,
                diagnostic: field(block, "diagnostic-code").map(str::to_string),
            })
        })
        .collect()
}

/// An ARF report: a complaint unless its type says the message was fine (`not-spam`) or
/// the report is about something else (`auth-failure`).
fn complaint(body: &[u8], addresses: &mut Vec<String>) -> Kind {
    let blocks = field_blocks(body);
    let Some(fields) = blocks.first() else {
        return Kind::Other;
    };
    if let Some(from) = field(fields, "original-mail-from") {
        addresses.extend(addresses_in(from));
    }
    let feedback_type = field(fields, "feedback-type")
        .unwrap_or("abuse")
        .to_ascii_lowercase();
    match feedback_type.as_str() {
        "not-spam" | "auth-failure" => Kind::Other,
        _ => Kind::Complaint { feedback_type },
    }
}

/// An automatic answer by its headers (RFC 3834 `Auto-Submitted`, and the non-standard
/// ones common mail programs set) or its subject.
fn auto_reply(mail: &ParsedMail<'_>) -> bool {
    let h = &mail.headers;
    let auto_submitted = h
        .get_first_value("Auto-Submitted")
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"));
    let flagged = ["X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"]
        .iter()
        .any(|n| h.get_first_value(n).is_some())
        || h.get_first_value("Precedence")
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("auto_reply"));
    let subject = h
        .get_first_value("Subject")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    auto_submitted || flagged || AUTO_REPLY_SUBJECTS.iter().any(|s| subject.starts_with(s))
}

/// The bare addresses in a header value (`"Ann" <a@x>, b@y`, `<b-1@z>`).
fn addresses_in(value: &str) -> Vec<String> {
    match mailparse::addrparse(value) {
        Ok(list) => list
            .iter()
            .flat_map(|a| match a {
                mailparse::MailAddr::Single(s) => vec![s.addr.clone()],
                mailparse::MailAddr::Group(g) => g.addrs.iter().map(|s| s.addr.clone()).collect(),
            })
            .collect(),
        Err(_) => {
            let v = value.trim().trim_matches(['<', '>']);
            if v.contains('@') {
                vec![v.to_string()]
            } else {
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ctype: &str, parts: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@relay.example\r\nTo: b-1-00@bounces.example.com\r\n\
             Subject: Delivery Status Notification\r\nMIME-Version: 1.0\r\n\
             Content-Type: {ctype}; boundary=\"X\"\r\n\r\n{parts}--X--\r\n"
        )
        .into_bytes()
    }

    fn dsn(recipient_blocks: &str) -> Vec<u8> {
        report(
            "multipart/report; report-type=delivery-status",
            &format!(
                "--X\r\nContent-Type: text/plain\r\n\r\nsorry\r\n--X\r\n\
                 Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n\
                 {recipient_blocks}\r\n"
            ),
        )
    }

    #[test]
    fn a_dsn_says_per_recipient_whether_it_failed_for_good() {
        let r = parse(&dsn(
            "Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1 (unknown user)\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n\
             Final-Recipient: RFC822; b@x.example\r\nAction: delayed\r\nStatus: 4.4.7\r\n\r\n\
             Original-Recipient: rfc822;c@x.example\r\nAction: failed\r\nStatus: 4.2.2\r\n\r\n\
             Final-Recipient: rfc822; d@x.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n",
        ))
        .unwrap();
        let Kind::Bounce(f) = r.kind else {
            panic!("{r:?}")
        };
        let summary: Vec<_> = f
            .iter()
            .map(|f| (f.hard, f.status.as_str(), f.recipient.as_deref().unwrap()))
            .collect();
        assert_eq!(
            summary,
            [
                (true, "5.1.1", "a@x.example"),
                (false, "4.4.7", "b@x.example"),
                (false, "4.2.2", "c@x.example"),
            ]
        );
        assert_eq!(
            f[0].diagnostic.as_deref(),
            Some("smtp; 550 5.1.1 no such user")
        );
        assert_eq!(r.addresses, ["b-1-00@bounces.example.com"]);
    }

    #[test]
    fn a_success_report_or_one_without_fields_reports_nothing() {
        let ok = parse(&dsn(
            "Final-Recipient: rfc822; d@x.example\r\nAction: relayed\r\n",
        ))
        .unwrap();
        assert_eq!(ok.kind, Kind::Bounce(vec![]));
        let empty = parse(&report(
            "multipart/report; report-type=delivery-status",
            "--X\r\nContent-Type: text/plain\r\n\r\nno status part\r\n",
        ))
        .unwrap();
        assert_eq!(empty.kind, Kind::Other);
    }

    #[test]
    fn arf_reports_are_complaints_unless_not_spam_and_quote_the_original() {
        let arf = |kind: &str| {
            report(
                "multipart/report; report-type=feedback-report",
                &format!(
                    "--X\r\nContent-Type: text/plain\r\n\r\nabuse report\r\n--X\r\n\
                     Content-Type: message/feedback-report\r\n\r\nFeedback-Type: {kind}\r\nVersion: 1\r\n\
                     Original-Mail-From: <b-2-ab@bounces.example.com>\r\n\r\n--X\r\n\
                     Content-Type: message/rfc822\r\n\r\nMessage-ID: <m1@contoso.example>\r\n\
                     List-Unsubscribe: <https://x.example/unsubscribe/TOKEN>, <mailto:u@x.example>\r\n\
                     Subject: news\r\n\r\nbody\r\n"
                ),
            )
        };
        let r = parse(&arf("abuse")).unwrap();
        assert_eq!(
            r.kind,
            Kind::Complaint {
                feedback_type: "abuse".into()
            }
        );
        assert!(
            r.addresses
                .contains(&"b-2-ab@bounces.example.com".to_string())
        );
        assert_eq!(r.quoted_message_id.as_deref(), Some("m1@contoso.example"));
        assert!(r.quoted_unsubscribe.unwrap().contains("/unsubscribe/TOKEN"));
        assert_eq!(parse(&arf("not-spam")).unwrap().kind, Kind::Other);
    }

    #[test]
    fn auto_replies_by_header_or_subject_and_plain_mail_is_neither() {
        let mail = |headers: &str| format!("From: a@x.example\r\n{headers}\r\n\r\nI am away.\r\n");
        for h in [
            "Subject: Re: news\r\nAuto-Submitted: auto-replied",
            "Subject: Automatic reply: news",
            "Subject: Out of Office: back Monday",
            "Subject: news\r\nX-Autoreply: yes",
            "Subject: news\r\nPrecedence: auto_reply",
        ] {
            assert_eq!(
                parse(mail(h).as_bytes()).unwrap().kind,
                Kind::AutoReply,
                "{h}"
            );
        }
        for h in [
            "Subject: Re: news\r\nAuto-Submitted: no",
            "Subject: thanks!",
        ] {
            assert_eq!(parse(mail(h).as_bytes()).unwrap().kind, Kind::Other, "{h}");
        }
    }

    #[test]
    fn junk_is_an_error_or_nothing_never_a_panic() {
        assert!(parse(b"").is_err());
        assert!(parse(b"just words, no header\r\n").is_err());
        // Cut off in the middle of its status part: what is there is read.
        let whole =
            dsn("Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n");
        for cut in [40, whole.len() / 2, whole.len() - 30] {
            let _ = parse(&whole[..cut]);
        }
        let truncated = &whole[..whole.len() - 12];
        assert!(matches!(parse(truncated).unwrap().kind, Kind::Bounce(_)));
        // Binary junk after a header.
        let mut junk = b"Subject: x\r\n\r\n".to_vec();
        junk.extend((0..=255u8).cycle().take(4096));
        assert_eq!(parse(&junk).unwrap().kind, Kind::Other);
        let deep = format!(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n{}",
            "--b\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".repeat(500)
        );
        let _ = parse(deep.as_bytes());
    }
}
