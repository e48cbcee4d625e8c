//! `rapport check`: builds every message rapport can send, through the same [`Mailer`] the
//! worker uses, so that template mistakes surface before a send: every campaign for a
//! sample person of every segment and for a person with no optional answers, and the
//! confirmation email (new request and "already subscribed").

use std::collections::HashSet;
use std::path::Path;

use super::{MailError, Mailer, Sending};
use crate::config::{CAMPAIGNS_FILE, Diagnostic, line_col};
use crate::render::KeepLinks;
use crate::site::{Site, sample_profiles};
use crate::track::{Origin, Signer};

/// The variables a campaign template can use, for messages.
const VARIABLES: &str = "first_name, name, email, month, year, profile.<question key>, \
     sections, segments, campaign.id, sender.name, sender.postal_address, profile_url, \
     unsubscribe_url, feedback_yes_url, feedback_no_url";

/// The variables the confirmation email and its subject can use.
const CONFIRMATION_VARIABLES: &str = "first_name, name, email, sender_name, postal_address, \
     confirm_url, profile_url, valid_days, valid_for, already_subscribed, answers_waiting, subject";

/// What Handlebars writes for an object (and, inside brackets, for a list of them).
const NOT_TEXT: &str = "[object]";

/// Variables that hold a list or an object, not text.
const NOT_TEXT_VARIABLES: &[&str] = &[
    "this", ".", "sections", "segments", "profile", "campaign", "sender",
];

/// Samples are built as of mid-January 2030, whatever today is.
const SAMPLE_TIME: i64 = 1_894_700_000;

/// Builds every message for every sample; returns the problems, located in the template
/// file where Handlebars says where, else at the campaign (or `confirm_subject`) in
/// `campaigns.toml`. Also returns warnings (segments no sample person matches).
pub fn check(site: &Site) -> (Vec<Diagnostic>, Vec<String>) {
    let (samples, unmatched) = sample_profiles(site);
    let warnings = unmatched
        .into_iter()
        .map(|s| {
            format!(
                "segment \"{s}\": no sample person matched it; make sure its rule can match someone"
            )
        })
        .chain(site.library.warnings.iter().map(|w| w.to_string()))
        .collect();
    // Sample links are signed with a key of their own and point nowhere.
    let mailer = Mailer::new(
        Signer::new(b"rapport check: sample links only"),
        "https://rapport.invalid",
    );
    let mut problems: Vec<Diagnostic> = Vec::new();
    let mut seen = HashSet::new();
    let mut report = |d: Diagnostic, reason: String| {
        // One line per problem, not one per sample that runs into it.
        if seen.insert((d.file.clone(), d.line, d.col, reason)) {
            problems.push(d);
        }
    };
    for campaign in &site.campaigns {
        for sample in &samples {
            let person = mailer.person(
                site,
                campaign,
                &sample.profile,
                &sample.facts,
                Origin::Campaign(&campaign.id),
                SAMPLE_TIME,
                &[],
            );
            let what = format!(
                "campaign \"{}\", rendering for {}",
                campaign.id, sample.label
            );
            let rendered = mailer.render(site, campaign, &person, &mut KeepLinks::default());
            let built = rendered.and_then(|r| {
                if let Some(d) = not_text(site, campaign, &r, &what) {
                    report(d, NOT_TEXT.to_string());
                }
                mailer.finish(site, campaign, &person, r, Sending::Delivery(0), false)
            });
            if let Err(e) = built {
                let (d, reason) =
                    locate(site, &e, &what, VARIABLES, &format!("\"{}\"", campaign.id));
                report(d, reason);
            }
        }
    }
    if let Some(sample) = samples.first() {
        for already in [false, true] {
            let mut person = sample.profile.clone();
            person.status = if already {
                crate::profile::Status::Subscribed
            } else {
                crate::profile::Status::Pending
            };
            let built = mailer.confirmation(
                site,
                &person,
                Sending::Delivery(0),
                7 * 86_400,
                SAMPLE_TIME,
                false,
            );
            if let Err(e) = built {
                let what = if already {
                    "the confirmation email (already subscribed)"
                } else {
                    "the confirmation email"
                };
                let (d, reason) = locate(site, &e, what, CONFIRMATION_VARIABLES, "confirm_subject");
                report(d, reason);
            }
        }
    }
    (problems, warnings)
}

/// Where a build error is, and why: the template file and line where Handlebars says,
/// else the first `anchor` in `campaigns.toml`.
fn locate(
    site: &Site,
    e: &MailError,
    what: &str,
    variables: &str,
    anchor: &str,
) -> (Diagnostic, String) {
    let campaigns_path = site.project.dir.join(CAMPAIGNS_FILE);
    let MailError::Render(e) = e else {
        let reason = e.to_string();
        let message = format!("{what}: {reason}");
        return (
            locate_in_campaigns(&campaigns_path, &site.project.source, anchor, message),
            reason,
        );
    };
    let (template, line, col) = (
        e.source.template_name.clone(),
        e.source.line_no,
        e.source.column_no,
    );
    let reason = match e.source.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(var)) => {
            format!("unknown variable \"{var}\"; templates see: {variables}")
        }
        other => other.to_string(),
    };
    let message = format!("{what}: {reason}");
    let d = match (
        template.as_deref().and_then(|t| site.templates.file_of(t)),
        line,
    ) {
        (Some(file), Some(line)) => Diagnostic {
            file: file.clone(),
            line,
            col: col.unwrap_or(1),
            message,
        },
        (Some(file), None) => Diagnostic::file(file, message),
        _ => locate_in_campaigns(&campaigns_path, &site.project.source, anchor, message),
    };
    (d, reason)
}

/// The first `needle` in `campaigns.toml` (its start when there is none).
fn locate_in_campaigns(path: &Path, source: &str, needle: &str, message: String) -> Diagnostic {
    let offset = source.find(needle).unwrap_or(0);
    let (line, col) = line_col(source, offset);
    Diagnostic {
        file: path.to_path_buf(),
        line,
        col,
        message,
    }
}

/// A rendered sample that writes out an object or a list of them (`[object]`, which a
/// reader would see): located at the first expression, in the campaign's template files,
/// that writes out one of the variables holding them ([`NOT_TEXT_VARIABLES`], or `this` in
/// a loop), else at the campaign in `campaigns.toml`.
fn not_text(
    site: &Site,
    campaign: &crate::campaign::Campaign,
    r: &crate::render::Rendered,
    what: &str,
) -> Option<Diagnostic> {
    let part = [
        ("subject", &r.subject),
        ("HTML", &r.html),
        ("text", &r.text),
    ]
    .into_iter()
    .find(|(_, s)| s.contains(NOT_TEXT))?
    .0;
    let message = format!(
        "{what}: the {part} contains \"{NOT_TEXT}\": a template writes out a list or an object, \
         not text. Write one of its fields; the sections are written \
         {{{{#each sections}}}}{{{{> (lookup this \"template\")}}}}{{{{/each}}}} (each with its template)"
    );
    let names = std::iter::once(campaign.template.as_str())
        .chain(campaign.sections.iter().map(|s| s.template.as_str()))
        .chain(["email-layout", "footer"]);
    for name in names {
        let Some(file) = site.templates.file_of(name) else {
            continue;
        };
        let Ok(source) = crate::config::read_text(file) else {
            continue;
        };
        if let Some((line, col)) = writes_out_non_text(&source) {
            return Some(Diagnostic {
                file: file.clone(),
                line,
                col,
                message,
            });
        }
    }
    let campaigns_path = site.project.dir.join(CAMPAIGNS_FILE);
    Some(locate_in_campaigns(
        &campaigns_path,
        &site.project.source,
        &format!("\"{}\"", campaign.id),
        message,
    ))
}

/// The line and column (1-based) of the first `{{x}}` or `{{{x}}}` in `source` whose `x`
/// is a variable holding a list or an object.
fn writes_out_non_text(source: &str) -> Option<(usize, usize)> {
    let mut at = 0;
    while let Some(open) = source[at..].find("{{").map(|i| at + i) {
        let inner_start = open
            + if source[open..].starts_with("{{{") {
                3
            } else {
                2
            };
        let close = source[inner_start..].find("}}").map(|i| inner_start + i)?;
        let expr = source[inner_start..close]
            .trim()
            .trim_start_matches('~')
            .trim_end_matches('~')
            .trim();
        let bare = expr.strip_prefix("@root.").unwrap_or(expr);
        if NOT_TEXT_VARIABLES.contains(&bare) {
            return Some(line_col(source, open));
        }
        at = close + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::writes_out_non_text;

    #[test]
    fn finds_the_expression_that_writes_out_an_object() {
        assert_eq!(
            writes_out_non_text("<p>{{first_name}}</p>\n{{#each sections}}{{{this}}}{{/each}}"),
            Some((2, 19))
        );
        assert_eq!(writes_out_non_text("{{ segments }}"), Some((1, 1)));
        assert_eq!(writes_out_non_text("{{@root.profile}}"), Some((1, 1)));
        assert_eq!(
            writes_out_non_text("{{#each sections}}{{this.segment}}{{/each}}"),
            None
        );
        assert_eq!(
            writes_out_non_text("{{profile.industry}} {{> sections}}"),
            None
        );
        assert_eq!(writes_out_non_text("{{unclosed"), None);
    }
}
