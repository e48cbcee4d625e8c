//! Assembles a rendered email into a MIME message: `multipart/alternative` with a text part
//! (given, or derived from the HTML) and the HTML part, UTF-8, a Message-ID on the sender's
//! domain, and any extra headers (List-Unsubscribe and friends).

use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use crate::config::Sender;
use crate::profile::Email;

/// A message that could not be built; names the part at fault.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the recipient address {0} is not accepted by the mail library: {1}")]
    Recipient(String, String),
    #[error("header {0}: {1}")]
    Header(String, String),
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
}

/// A built message and its Message-ID (without angle brackets), recorded with the send.
#[derive(Debug, Clone)]
pub struct Composed {
    pub message: Message,
    pub message_id: String,
}

/// Builds the message for one recipient. `text` is used as the plain part when given;
/// otherwise the plain part is derived from `html` so that both say the same thing.
/// `eight_bit` says the way out takes 8-bit bodies (SMTP's 8BITMIME; see [`body`]).
/// `return_path` is the envelope sender, when it is not the `from` address (VERP).
#[allow(clippy::too_many_arguments)]
pub fn compose(
    sender: &Sender,
    return_path: Option<lettre::Address>,
    to: &Email,
    to_name: Option<&str>,
    subject: &str,
    html: &str,
    text: Option<String>,
    headers: &[(&'static str, String)],
    eight_bit: bool,
) -> Result<Composed, MessageError> {
    let address: lettre::Address =
        to.as_str()
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                MessageError::Recipient(to.to_string(), e.to_string())
            })?;
    // The envelope is given rather than left to lettre, which would parse it back out of
    // the formatted From and To headers.
    let from = return_path.unwrap_or_else(|| sender.from.email.clone());
    let envelope = lettre::address::Envelope::new(Some(from), vec![address.clone()])
        .map_err(|e| MessageError::Recipient(to.to_string(), e.to_string()))?;
    let recipient = Mailbox::new(
        to_name.filter(|n| !n.is_empty()).map(str::to_string),
        address,
    );
    let text = match text {
        Some(t) => t,
        None => html_to_text(html),
    };
    let message_id = format!("{}@{}", uuid::Uuid::new_v4().simple(), sender.domain());
    let mut builder = Message::builder()
        .from(sender.from.clone())
        .to(recipient)
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .envelope(envelope);
    if let Some(r) = &sender.reply_to {
        builder = builder.reply_to(r.clone());
    }
    for (name, value) in headers {
        let name = HeaderName::new_from_ascii_str(name);
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let message = builder.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(body(text, eight_bit)),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(body(html.to_string(), eight_bit)),
            ),
    )?;
    Ok(Composed {
        message,
        message_id,
    })
}

/// A part's body as it goes on the wire. When every line fits SMTP's limit of 998 octets it
/// is sent as it is: `7bit` when it is ASCII, `8bit` otherwise (when the way out takes 8-bit
/// bodies). Only bodies that cannot go as they are get quoted-printable or base64 (lettre's
/// choice): encoding every message costed about a tenth of a send's CPU time and made
/// messages bigger.
pub fn body(content: String, eight_bit: bool) -> Body {
    let (wire, fits) = crlf(content);
    match (fits, wire.is_ascii(), eight_bit) {
        (true, true, _) => {
            Body::dangerous_pre_encoded(wire.into_bytes(), ContentTransferEncoding::SevenBit)
        }
        (true, false, true) => {
            Body::dangerous_pre_encoded(wire.into_bytes(), ContentTransferEncoding::EightBit)
        }
        _ => Body::new(wire),
    }
}

/// Line ends as CRLF (a lone `\n` or `\r` becomes `\r\n`), and whether the result can go
/// on the wire unencoded: no line over 998 octets, no NUL. One pass over the lines (found
/// by memchr) does both.
fn crlf(text: String) -> (String, bool) {
    let text = if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    };
    let mut fits = !text.contains('\0');
    let mut out = String::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text.as_bytes()) {
        if start == 0 {
            out.reserve(text.len() + text.len() / 16);
        }
        let line = &text[start..end];
        fits &= line.len() <= 998;
        out.push_str(line);
        out.push_str("\r\n");
        start = end + 1;
    }
    fits &= text.len() - start <= 998;
    if start == 0 {
        return (text, fits);
    }
    out.push_str(&text[start..]);
    (out, fits)
}

/// The plain-text part for an HTML body: the text of the body (no head, styles or
/// scripts), paragraphs kept apart, and each link's URL on a line of its own after the
/// link text, never broken and with nothing stuck to it (mail clients and people copying it
/// would otherwise take a closing parenthesis along). nanohtml2text is used rather than
/// html2text because it is about ten times faster, which matters at one render per recipient.
pub fn html_to_text(html: &str) -> String {
    urls_on_own_lines(&nanohtml2text::html2text(html))
}

/// nanohtml2text's text with each `text (URL)` written as `text:`, then the URL on a line
/// of its own.
pub(super) fn urls_on_own_lines(text: &str) -> String {
    // Every message's text goes through here: a searcher made once, which skips through
    // the text by vector instructions (`str::find` set up a two-way search per call and
    // went byte by byte: a tenth of the text part's cost, BENCHMARKS.md).
    static LINK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(LINK_OPENS));
    urls_on_own_lines_by(text, |rest| LINK.find(rest.as_bytes()))
}

/// What opens a link's URL in nanohtml2text's text: `text (URL)`.
const LINK_OPENS: &str = " (http";

/// [`urls_on_own_lines`], finding [`LINK_OPENS`] with `find` (the test compares searchers).
fn urls_on_own_lines_by(text: &str, find: impl Fn(&str) -> Option<usize>) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(at) = find(rest) {
        let after = &rest[at + 2..];
        match after.find(|c: char| c == ')' || c.is_whitespace()) {
            Some(end) if after[end..].starts_with(')') => {
                out.push_str(&rest[..at]);
                out.push_str(":\n");
                out.push_str(&after[..end]);
                out.push('\n');
                rest = after[end + 1..].trim_start_matches(' ');
            }
            _ => {
                out.push_str(&rest[..at + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn the_link_searcher_finds_what_str_find_finds(
            text in "([a-z ]| \\(http| \\(https://x\\.example/p\\)|\\)|\n|é| (  )){0,40}"
        ) {
            proptest::prop_assert_eq!(
                urls_on_own_lines(&text),
                urls_on_own_lines_by(&text, |rest| rest.find(LINK_OPENS))
            );
        }
    }

    #[test]
    fn builds_multipart_with_derived_text() {
        let sender = Sender {
            from: "Contoso <hello@contoso.example>".parse().unwrap(),
            reply_to: None,
            postal_address: "1 Way".into(),
        };
        let to = Email::parse("ann@example.com").unwrap();
        let c = compose(
            &sender,
            None,
            &to,
            Some("Ann"),
            "Héllo",
            "<p>Hi <a href=\"https://x.example/\">there</a></p>",
            None,
            &[("List-Unsubscribe", "<https://x.example/u>".into())],
            true,
        )
        .unwrap();
        let raw = String::from_utf8(c.message.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain; charset=utf-8"));
        assert!(raw.contains("text/html; charset=utf-8"));
        assert!(raw.contains(&format!("Message-ID: <{}>", c.message_id)));
        assert!(c.message_id.ends_with("@contoso.example"));
        assert!(raw.contains("List-Unsubscribe: <https://x.example/u>"));
        assert!(raw.contains("Date: "));
        assert!(raw.contains("To: Ann <ann@example.com>"));
    }

    #[test]
    fn bodies_go_as_they_are_when_lines_allow() {
        use lettre::message::header::ContentTransferEncoding as Cte;
        let enc = |s: &str, eight| body(s.to_string(), eight).encoding();
        assert_eq!(enc("plain\nascii", true), Cte::SevenBit);
        assert_eq!(
            enc(&"x".repeat(998), false),
            Cte::SevenBit,
            "998 octets fit"
        );
        assert_eq!(enc("caf\u{e9} \u{b7} ok", true), Cte::EightBit);
        assert_ne!(
            enc("caf\u{e9}", false),
            Cte::EightBit,
            "no 8BITMIME: encoded"
        );
        assert_ne!(
            enc(&"x".repeat(999), true),
            Cte::SevenBit,
            "a line too long"
        );
        let lone_cr = body("a\rb".into(), true).into_vec();
        assert!(
            lone_cr.windows(2).all(|w| w[0] != b'\r' || w[1] == b'\n')
                && lone_cr.last() != Some(&b'\r'),
            "a lone CR never reaches the wire: {lone_cr:?}"
        );
        assert_eq!(
            body("a\nb\r\nc\n".into(), true).into_vec(),
            b"a\r\nb\r\nc\r\n".to_vec()
        );
    }

    #[test]
    fn text_part_keeps_long_links_whole() {
        let url = format!("https://example.com/confirm/{}", "A".repeat(120));
        let text = html_to_text(&format!("<p>Please <a href=\"{url}\">confirm</a> now.</p>"));
        assert!(
            text.lines().any(|l| l == url),
            "the URL alone on its line: {text}"
        );
        assert!(text.contains("Please confirm:"), "{text}");
    }
}
