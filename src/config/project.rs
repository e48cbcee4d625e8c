//! `campaigns.toml`: the sender identity, the form and the campaigns, loaded from the
//! marketer's directory with every problem located by file, line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::diagnostic::Diagnostic;
use crate::profile::{Choice, Form, Question, label_for};

/// The file name of the main configuration inside `--dir`.
pub const CAMPAIGNS_FILE: &str = "campaigns.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignsToml {
    sender: SenderToml,
    #[serde(default)]
    form: Option<FormToml>,
    #[serde(default, rename = "campaign")]
    campaigns: Vec<Spanned<CampaignToml>>,
    #[serde(default)]
    events: Option<EventsToml>,
    #[serde(default, rename = "webhook")]
    webhooks: Vec<WebhookToml>,
    /// `[topics] key = "Label"`: what the library is about, in the file's order.
    #[serde(default)]
    topics: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    sunset: Option<Spanned<SunsetToml>>,
}

/// `[sunset] after_days = 180, campaign = "still-interested"` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SunsetToml {
    after_days: Spanned<i64>,
    campaign: Spanned<String>,
}

/// The sunset: people silent for `after_days` are sent `campaign` (a `reconfirm`) once,
/// and lapse when they do not click it within `profile::LAPSE_DAYS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sunset {
    pub after_days: i64,
    pub campaign: String,
    /// Where `campaign` is written, for the check that it names a reconfirm campaign.
    pub campaign_at: usize,
}

/// A library topic of `[topics]`: its key (in content files, answers and segments) and the
/// label the profile centre shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Topic {
    pub key: String,
    pub label: String,
}

/// `[events] names = [...]`: what other systems may report through the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsToml {
    #[serde(default)]
    names: Vec<Spanned<String>>,
}

/// One `[[webhook]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookToml {
    url: Spanned<String>,
    events: Vec<Spanned<String>>,
    secret_env: Spanned<String>,
}

/// An endpoint told about what happens (`[[webhook]]`). The secret is not here: it is read
/// from the environment variable `secret_env` names ([`Webhook::secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: url::Url,
    pub events: Vec<crate::event::HookEvent>,
    pub secret_env: String,
}

impl Webhook {
    /// The signing secret from the environment, or what to set when it is missing.
    pub fn secret(&self) -> Result<String, String> {
        match std::env::var(&self.secret_env) {
            Ok(s) if !s.is_empty() => Ok(s),
            _ => Err(format!(
                "the secret variable {} is not set in the server's environment",
                self.secret_env
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SenderToml {
    from: Spanned<String>,
    postal_address: Spanned<String>,
    #[serde(default)]
    reply_to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FormToml {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    steps: Option<SpannedSteps>,
    #[serde(default)]
    choices: BTreeMap<Spanned<String>, Vec<ChoiceToml>>,
    #[serde(default)]
    confirm_subject: Option<String>,
}

/// `steps = [["email", "name"], ...]` with every position kept for messages.
type SpannedSteps = Spanned<Vec<Spanned<Vec<Spanned<String>>>>>;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ChoiceToml {
    Value(String),
    Labelled { value: String, label: String },
}

/// One `[[campaign]]` as written. The campaign module interprets and checks it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignToml {
    pub id: Spanned<String>,
    pub kind: Spanned<String>,
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    #[serde(default)]
    pub audience: Option<Spanned<String>>,
    pub subject: Spanned<String>,
    pub template: Spanned<String>,
    #[serde(default, rename = "section")]
    pub sections: Vec<SectionToml>,
    #[serde(default)]
    pub after: Option<Spanned<AfterToml>>,
    #[serde(default)]
    pub unless: Option<Spanned<String>>,
    /// The open pixel: `true` always, `false` never, omitted: only in messages long enough
    /// to earn it (see `campaign::Campaign::pixel`).
    #[serde(default)]
    pub track_opens: Option<bool>,
    /// `[campaign.library] items = 3`: the newsletter gets the person's most relevant
    /// library items as `library`.
    #[serde(default)]
    pub library: Option<Spanned<LibraryToml>>,
}

/// `[campaign.library]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryToml {
    pub items: Spanned<i64>,
}

/// `[[campaign.section]]`: content chosen for people in a segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionToml {
    pub segment: Spanned<String>,
    pub template: Spanned<String>,
}

/// `after = { event = "click", tag = "training", delay = "3d" }` of a follow-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterToml {
    pub event: Spanned<String>,
    #[serde(default)]
    pub tag: Option<Spanned<String>>,
    #[serde(default)]
    pub campaign: Option<Spanned<String>>,
    #[serde(default)]
    pub delay: Option<Spanned<String>>,
}

/// Who the mail comes from and the postal address every footer prints.
#[derive(Debug, Clone)]
pub struct Sender {
    pub from: lettre::message::Mailbox,
    pub reply_to: Option<lettre::message::Mailbox>,
    pub postal_address: String,
}

impl Sender {
    /// The display name, or the address when there is none.
    pub fn name(&self) -> String {
        self.from
            .name
            .clone()
            .unwrap_or_else(|| self.from.email.to_string())
    }

    /// The sender's domain: Message-IDs and the EHLO name use it.
    pub fn domain(&self) -> &str {
        self.from.email.domain()
    }
}

/// The loaded `campaigns.toml`.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub sender: Sender,
    pub form: Form,
    pub confirm_subject: String,
    pub campaigns: Vec<CampaignToml>,
    /// The declared names of events reported by other systems (`[events] names`).
    pub events: Vec<String>,
    /// The `[[webhook]]` endpoints.
    pub webhooks: Vec<Webhook>,
    /// `[topics]`, in the file's order.
    pub topics: Vec<Topic>,
    /// `[sunset]`, when the file has one.
    pub sunset: Option<Sunset>,
    /// The file's text, kept so that later checks can locate their findings.
    pub source: String,
}

impl Project {
    /// Reads `DIR/campaigns.toml`. Every problem found is returned, located.
    pub fn load(dir: &Path) -> Result<Project, Vec<Diagnostic>> {
        let path = dir.join(CAMPAIGNS_FILE);
        let source = super::read_text(&path).map_err(|e| {
            vec![Diagnostic::file(
                &path,
                format!(
                    "cannot read {CAMPAIGNS_FILE} ({e}); run rapport in the directory that holds it, or pass --dir DIR"
                ),
            )]
        })?;
        Project::parse(dir, &path, source)
    }

    /// Parses the text of `campaigns.toml` found at `path`.
    pub fn parse(dir: &Path, path: &Path, source: String) -> Result<Project, Vec<Diagnostic>> {
        if let Some(at) = super::too_deep(&source) {
            return Err(vec![super::too_deep_diagnostic(path, &source, at)]);
        }
        let raw: CampaignsToml =
            toml::from_str(&source).map_err(|e| vec![Diagnostic::toml(path, &source, 0, &e)])?;
        let mut problems = Vec::new();
        let at = |offset: usize, msg: String| Diagnostic::at(path, &source, offset, msg);

        let sender = parse_sender(&raw.sender, &at, &mut problems);
        let topics = parse_topics(&raw.topics, &at, &mut problems);
        let (parts, confirm_subject) = match &raw.form {
            None => (Some(FormParts::default()), default_confirm_subject()),
            Some(f) => (
                parse_form(f, &at, &mut problems),
                f.confirm_subject
                    .clone()
                    .unwrap_or_else(default_confirm_subject),
            ),
        };
        let form = parts.and_then(|p| p.with_topics(&topics, &at, &mut problems));
        let sunset = raw.sunset.as_ref().and_then(|s| {
            let days = *s.get_ref().after_days.get_ref();
            if !(1..=3650).contains(&days) {
                problems.push(at(
                    s.get_ref().after_days.span().start,
                    format!("[sunset] after_days = {days}: use a number of days from 1 to 3650 (180 is common)"),
                ));
                return None;
            }
            Some(Sunset {
                after_days: days,
                campaign: s.get_ref().campaign.get_ref().clone(),
                campaign_at: s.get_ref().campaign.span().start,
            })
        });
        let events = parse_events(raw.events.as_ref(), &at, &mut problems);
        let webhooks = raw
            .webhooks
            .iter()
            .filter_map(|w| parse_webhook(w, &at, &mut problems))
            .collect();
        match (sender, form, problems.is_empty()) {
            (Some(sender), Some(form), true) => Ok(Project {
                dir: dir.to_path_buf(),
                sender,
                form,
                confirm_subject,
                campaigns: raw.campaigns.into_iter().map(Spanned::into_inner).collect(),
                events,
                webhooks,
                topics,
                sunset,
                source,
            }),
            _ => Err(problems),
        }
    }
}

/// Checks `[topics]`: keys shaped like choice values, labels not empty; in file order.
fn parse_topics(
    raw: &BTreeMap<Spanned<String>, Spanned<String>>,
    at: &impl Fn(usize, String) -> Diagnostic,
    problems: &mut Vec<Diagnostic>,
) -> Vec<Topic> {
    let mut topics: Vec<(usize, Topic)> = Vec::new();
    for (key, label) in raw {
        let k = key.get_ref();
        let shaped = (1..=64).contains(&k.len())
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !shaped {
            problems.push(at(
                key.span().start,
                format!(
                    "[topics] key {k:?}: use 1 to 64 lower-case letters, digits, - and _ (training)"
                ),
            ));
        } else if label.get_ref().trim().is_empty() {
            problems.push(at(
                label.span().start,
                format!("[topics] {k} has an empty label; write what readers see, like \"Training and how-to guides\""),
            ));
        } else {
            topics.push((
                key.span().start,
                Topic {
                    key: k.clone(),
                    label: label.get_ref().trim().to_string(),
                },
            ));
        }
    }
    topics.sort_by_key(|(start, _)| *start);
    topics.into_iter().map(|(_, t)| t).collect()
}

/// A form as `[form]` gives it (or the built-in one), before it is checked and built.
struct FormParts {
    version: Option<String>,
    steps: Vec<Vec<Question>>,
    choices: Vec<(Question, Vec<Choice>)>,
    /// Where `[form] steps` is written (0 for the built-in form), for the form's problems.
    at: usize,
}

impl Default for FormParts {
    /// The built-in form's questions and choice lists.
    fn default() -> FormParts {
        let form = Form::default();
        FormParts {
            version: None,
            steps: form.steps().to_vec(),
            choices: Question::ALL
                .into_iter()
                .filter(|q| q.builtin_choices().is_none() && !form.choices(*q).is_empty())
                .map(|q| (q, form.choices(q).to_vec()))
                .collect(),
            at: 0,
        }
    }
}

impl FormParts {
    /// The form, with the topics as the choices of `topics` and, when there are topics and
    /// the steps ask neither `topics` nor `frequency`, a last step asking both (the profile
    /// centre then asks what to hear about and how often).
    fn with_topics(
        mut self,
        topics: &[Topic],
        at: &impl Fn(usize, String) -> Diagnostic,
        problems: &mut Vec<Diagnostic>,
    ) -> Option<Form> {
        let asks = |q: Question| self.steps.iter().flatten().any(|x| *x == q);
        let (topics_asked, frequency_asked) = (asks(Question::Topics), asks(Question::Frequency));
        if topics.is_empty() && topics_asked {
            problems.push(at(
                self.at,
                "[form] asks \"topics\" but campaigns.toml has no [topics]; add [topics] training = \"Training and how-to guides\", ...".into(),
            ));
            return None;
        }
        if !topics.is_empty() {
            match (topics_asked, frequency_asked) {
                (false, false) => self.steps.push(vec![Question::Topics, Question::Frequency]),
                (false, true) => self.steps.push(vec![Question::Topics]),
                _ => {}
            }
            let list = topics
                .iter()
                .map(|t| Choice {
                    value: t.key.clone(),
                    label: t.label.clone(),
                })
                .collect();
            self.choices.push((Question::Topics, list));
        }
        Form::new(self.version, self.steps, self.choices)
            .map_err(|e| problems.push(at(self.at, format!("[form] {e}"))))
            .ok()
    }
}

/// Checks `[events] names`: lower-case identifiers, each once, none of rapport's own.
fn parse_events(
    e: Option<&EventsToml>,
    at: &impl Fn(usize, String) -> Diagnostic,
    problems: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in e.map(|e| e.names.as_slice()).unwrap_or_default() {
        let name = n.get_ref();
        let shaped = (1..=64).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let problem = if !shaped {
            Some(format!(
                "event name {name:?}: use 1 to 64 lower-case letters, digits and _, starting with a letter (course_completed)"
            ))
        } else if crate::event::built_in().contains(&name.as_str()) {
            Some(format!(
                "event name \"{name}\" is one rapport records itself; choose another (rapport's own: {})",
                crate::event::built_in().join(", ")
            ))
        } else if names.contains(name) {
            Some(format!("event name \"{name}\" is declared twice"))
        } else {
            None
        };
        match problem {
            Some(p) => problems.push(at(n.span().start, format!("[events] {p}"))),
            None => names.push(name.clone()),
        }
    }
    names
}

/// Checks one `[[webhook]]`: an http(s) URL, known event types, an environment variable name.
fn parse_webhook(
    w: &WebhookToml,
    at: &impl Fn(usize, String) -> Diagnostic,
    problems: &mut Vec<Diagnostic>,
) -> Option<Webhook> {
    let before = problems.len();
    let url = match url::Url::parse(w.url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            problems.push(at(
                w.url.span().start,
                format!(
                    "[[webhook]] url {:?} must be an http:// or https:// address",
                    w.url.get_ref()
                ),
            ));
            None
        }
        Err(e) => {
            problems.push(at(
                w.url.span().start,
                format!("[[webhook]] url {:?} is not a URL ({e})", w.url.get_ref()),
            ));
            None
        }
    };
    let mut events = Vec::new();
    if w.events.is_empty() {
        problems.push(at(
            w.url.span().start,
            format!(
                "[[webhook]] events = [] would send nothing; list some of: {}",
                crate::event::HookEvent::names().join(", ")
            ),
        ));
    }
    for e in &w.events {
        match e.get_ref().parse::<crate::event::HookEvent>() {
            Ok(k) if !events.contains(&k) => events.push(k),
            Ok(_) => {}
            Err(_) => problems.push(at(
                e.span().start,
                format!(
                    "[[webhook]] unknown event type \"{}\"; known: {}",
                    e.get_ref(),
                    crate::event::HookEvent::names().join(", ")
                ),
            )),
        }
    }
    let var = w.secret_env.get_ref();
    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        problems.push(at(
            w.secret_env.span().start,
            format!(
                "[[webhook]] secret_env {var:?} must name an environment variable (CRM_HOOK_SECRET); the secret itself never goes in the file"
            ),
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(Webhook {
        url: url?,
        events,
        secret_env: var.clone(),
    })
}

fn default_confirm_subject() -> String {
    "Please confirm your subscription".to_string()
}

fn parse_sender(
    s: &SenderToml,
    at: &impl Fn(usize, String) -> Diagnostic,
    problems: &mut Vec<Diagnostic>,
) -> Option<Sender> {
    let mailbox = |v: &Spanned<String>, key: &str, problems: &mut Vec<Diagnostic>| {
        v.get_ref().parse::<lettre::message::Mailbox>().map_err(|e| {
            problems.push(at(
                v.span().start,
                format!(
                    "[sender] {key} = {:?} is not a valid address ({e}); write it as \"Name <hello@example.com>\"",
                    v.get_ref()
                ),
            ))
        })
    };
    let from = mailbox(&s.from, "from", problems).ok();
    let reply_to = match &s.reply_to {
        Some(r) => Some(mailbox(r, "reply_to", problems).ok()?),
        None => None,
    };
    let postal = s.postal_address.get_ref().trim();
    if postal.is_empty() {
        problems.push(at(
            s.postal_address.span().start,
            "[sender] postal_address is empty; every email must print the sender's postal address"
                .into(),
        ));
        return None;
    }
    Some(Sender {
        from: from?,
        reply_to,
        postal_address: postal.to_string(),
    })
}

fn parse_form(
    f: &FormToml,
    at: &impl Fn(usize, String) -> Diagnostic,
    problems: &mut Vec<Diagnostic>,
) -> Option<FormParts> {
    let known = || {
        Question::ALL
            .iter()
            .map(|q| q.key())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let question = |s: &Spanned<String>, problems: &mut Vec<Diagnostic>| {
        let q = Question::from_key(s.get_ref());
        if q.is_none() {
            problems.push(at(
                s.span().start,
                format!("unknown question \"{}\"; known: {}", s.get_ref(), known()),
            ));
        }
        q
    };
    let before = problems.len();
    let default = Form::default();
    let steps: Vec<Vec<Question>> = match &f.steps {
        Some(steps) => steps
            .get_ref()
            .iter()
            .map(|step| {
                step.get_ref()
                    .iter()
                    .filter_map(|k| question(k, problems))
                    .collect()
            })
            .collect(),
        None => default.steps().to_vec(),
    };
    let mut choices = Vec::new();
    for (key, list) in &f.choices {
        if let Some(q) = question(key, problems) {
            let list = list
                .iter()
                .map(|c| match c {
                    ChoiceToml::Value(v) => Choice {
                        value: v.clone(),
                        label: label_for(v),
                    },
                    ChoiceToml::Labelled { value, label } => Choice {
                        value: value.clone(),
                        label: label.clone(),
                    },
                })
                .collect();
            choices.push((q, list));
        }
    }
    // Choice questions the file leaves out keep the built-in lists.
    for q in [
        Question::Products,
        Question::Industry,
        Question::BusinessNeed,
    ] {
        if !choices.iter().any(|(c, _)| *c == q) {
            choices.push((q, default.choices(q).to_vec()));
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(FormParts {
        version: f.version.clone(),
        steps,
        choices,
        at: f.steps.as_ref().map_or(0, |s| s.span().start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Project, Vec<Diagnostic>> {
        Project::parse(Path::new("."), Path::new("campaigns.toml"), src.to_string())
    }

    const SENDER: &str =
        "[sender]\nfrom = \"Contoso <hello@contoso.example>\"\npostal_address = \"1 Way\"\n";

    #[test]
    fn minimal_file_gets_the_default_form() {
        let p = parse(SENDER).unwrap();
        assert_eq!(p.sender.name(), "Contoso");
        assert_eq!(p.sender.domain(), "contoso.example");
        assert_eq!(p.form.steps().len(), 4);
    }

    #[test]
    fn locates_unknown_keys_and_questions() {
        let e = parse(&format!("{SENDER}colour = 1\n")).unwrap_err();
        assert_eq!(e[0].line, 4, "{e:?}");
        assert!(e[0].message.contains("colour"), "{e:?}");

        let e = parse(&format!(
            "{SENDER}[form]\nsteps = [[\"email\", \"nmae\"]]\n"
        ))
        .unwrap_err();
        assert_eq!((e[0].line, e[0].col), (5, 20), "{e:?}");
        assert!(e[0].message.contains("unknown question \"nmae\""));
    }

    #[test]
    fn events_and_webhooks() {
        let p = parse(&format!(
            "{SENDER}[events]\nnames = [\"course_completed\", \"trial_started\"]\n[[webhook]]\nurl = \"https://crm.example/hooks\"\nevents = [\"subscribed\", \"clicked\"]\nsecret_env = \"CRM_HOOK_SECRET\"\n"
        ))
        .unwrap();
        assert_eq!(p.events, ["course_completed", "trial_started"]);
        assert_eq!(p.webhooks[0].url.as_str(), "https://crm.example/hooks");
        assert_eq!(p.webhooks[0].events.len(), 2);

        let e = parse(&format!(
            "{SENDER}[events]\nnames = [\"click\", \"Bad Name\", \"ok\", \"ok\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].message.contains("rapport records itself"), "{e:?}");
        assert_eq!((e[1].line, e[1].col), (5, 19), "{e:?}");
        assert!(e[2].message.contains("twice"), "{e:?}");

        let e = parse(&format!(
            "{SENDER}[[webhook]]\nurl = \"ftp://x\"\nevents = [\"sent\"]\nsecret_env = \"a b\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[1].message.contains("unknown event type \"sent\""),
            "{e:?}"
        );
        assert_eq!(e[1].line, 6, "{e:?}");
    }

    #[test]
    fn reports_bad_sender() {
        let e = parse("[sender]\nfrom = \"not an address\"\npostal_address = \" \"\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].line, 2);
        assert_eq!(e[1].line, 3);
    }

    #[test]
    fn configured_choices_with_labels() {
        let p = parse(&format!(
            "{SENDER}[form]\nsteps = [[\"email\"], [\"industry\"]]\n[form.choices]\nindustry = [\"retail\", {{ value = \"b2b\", label = \"Business services\" }}]\n"
        ))
        .unwrap();
        let c = p.form.choices(Question::Industry);
        assert_eq!(c[0].label, "Retail");
        assert_eq!(c[1].label, "Business services");
    }
}
