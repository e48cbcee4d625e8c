//! Campaigns: the welcome, the recurring newsletter and follow-ups of `campaigns.toml`,
//! checked against the segments and templates they name, and their content selection.

use std::time::Duration;

use toml::Spanned;

use crate::config::{CampaignToml, Diagnostic, Project, parse_duration};
use crate::segment::{EVERYONE, Segments};

/// The three kinds of campaign the programme needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sent once to each person after confirmation (+ delay).
    Welcome,
    /// Recurring on a schedule (and by `rapport run`).
    Newsletter,
    /// Sent once to each person after an event (+ delay), unless a segment says not to.
    FollowUp,
    /// The sunset's re-permission message (`[sunset] campaign`): sent once to people silent
    /// too long, with `{{keep_url}}`.
    Reconfirm,
}

impl Kind {
    /// The name used in `campaigns.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Welcome => "welcome",
            Kind::Newsletter => "newsletter",
            Kind::FollowUp => "follow_up",
            Kind::Reconfirm => "reconfirm",
        }
    }
}

/// What starts a follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A click, optionally only on links with this `data-tag`.
    Click { tag: Option<String> },
    /// An open, optionally of one campaign.
    Open { campaign: Option<String> },
    /// The person answered or changed questions in the profile centre.
    ProfileUpdate,
    /// Another system reported this declared event (`POST /api/v1/events`).
    Event { name: String },
}

/// A cron schedule, parsed with the parser the scheduler uses.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: croner::Cron,
    pub source: String,
}

/// Content chosen for people in a segment (`[[campaign.section]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    pub segment: String,
    pub template: String,
}

/// A checked campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    pub kind: Kind,
    pub delay: Duration,
    pub schedule: Option<Schedule>,
    /// The segment that receives it (always within subscribed profiles).
    pub audience: String,
    pub subject: String,
    pub template: String,
    pub sections: Vec<Section>,
    pub trigger: Option<Trigger>,
    /// A segment checked right before sending: members do not get it.
    pub unless: Option<String>,
    /// `track_opens` as written: `None` leaves it to [`Campaign::pixel`].
    pub track_opens: Option<bool>,
    /// `[campaign.library] items`: how many library items each message carries (0: none).
    pub library: usize,
}

/// The text (in bytes) a message needs before the open pixel goes in by default. Content
/// filters read a short HTML message with an image as an image-only message (SpamAssassin's
/// `HTML_IMAGE_ONLY_*` rules score 0.7 to 2.8 points up to 3,200 bytes of words, whatever
/// the image); a 1x1 pixel in a two-line welcome costs more reputation than its open is
/// worth, the more so as privacy proxies (Apple Mail, Gmail) fetch pixels themselves.
pub const PIXEL_TEXT_MIN: usize = 4_000;

impl Campaign {
    /// Whether a message of this campaign whose text part is `text` carries the open
    /// pixel: as `track_opens` says, else only past [`PIXEL_TEXT_MIN`] bytes of text.
    pub fn pixel(&self, text: &str) -> bool {
        self.track_opens.unwrap_or(text.len() >= PIXEL_TEXT_MIN)
    }

    /// The sections for one person, given which segments they are in: every section whose
    /// segment they are in, in order.
    pub fn sections_in(
        &self,
        memberships: &std::collections::BTreeMap<String, bool>,
    ) -> Vec<Section> {
        self.sections
            .iter()
            .filter(|s| memberships.get(&s.segment).copied().unwrap_or(false))
            .cloned()
            .collect()
    }
}

/// Parses a cron expression with seconds (`0 0 9 1 * *`); five fields are read as minutes.
pub fn parse_cron(source: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds};
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(source)
        .map_err(|e| {
            format!(
                "{e}; write six fields with seconds, like \"0 0 9 1 * *\" (09:00 UTC on the 1st)"
            )
        })
}

/// The campaign ids and declared event names of the file, for rules that name them.
pub fn names(project: &Project) -> crate::segment::Names {
    crate::segment::Names {
        campaigns: project
            .campaigns
            .iter()
            .map(|c| c.id.get_ref().clone())
            .collect(),
        events: project.events.clone(),
    }
}

/// Checks every `[[campaign]]` against the segments and templates. All problems are
/// returned, located in `campaigns.toml`.
pub fn build(
    project: &Project,
    segments: &Segments,
    has_template: &dyn Fn(&str) -> bool,
) -> Result<Vec<Campaign>, Vec<Diagnostic>> {
    let path = project.dir.join(crate::config::CAMPAIGNS_FILE);
    let mut problems = Vec::new();
    let mut at = |s: &dyn SpanLike, msg: String| {
        problems.push(Diagnostic::at(&path, &project.source, s.start(), msg))
    };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in &project.campaigns {
        if let Some(campaign) = build_one(
            c,
            &project.events,
            segments,
            has_template,
            &mut at,
            &mut seen,
        ) {
            out.push(campaign);
        }
    }
    if let Some(sunset) = &project.sunset {
        match out.iter().find(|c| c.id == sunset.campaign) {
            Some(c) if c.kind == Kind::Reconfirm => {}
            Some(c) => problems.push(Diagnostic::at(
                &path,
                &project.source,
                sunset.campaign_at,
                format!(
                    "[sunset] campaign \"{}\" is a {} campaign; the sunset sends a kind = \"reconfirm\" one",
                    c.id,
                    c.kind.as_str()
                ),
            )),
            None => problems.push(Diagnostic::at(
                &path,
                &project.source,
                sunset.campaign_at,
                format!(
                    "[sunset] campaign \"{}\" is not a [[campaign]] of this file; add one with kind = \"reconfirm\"",
                    sunset.campaign
                ),
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Anything with a start offset in the file.
trait SpanLike {
    fn start(&self) -> usize;
}

impl<T> SpanLike for Spanned<T> {
    fn start(&self) -> usize {
        self.span().start
    }
}

fn build_one(
    c: &CampaignToml,
    events: &[String],
    segments: &Segments,
    has_template: &dyn Fn(&str) -> bool,
    at: &mut dyn FnMut(&dyn SpanLike, String),
    seen: &mut std::collections::HashSet<String>,
) -> Option<Campaign> {
    let id = c.id.get_ref().trim().to_string();
    let mut ok = true;
    if id.is_empty()
        || !id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        at(
            &c.id,
            format!(
                "campaign id {:?} may use letters, digits, - and _ only",
                c.id.get_ref()
            ),
        );
        ok = false;
    } else if !seen.insert(id.clone()) {
        at(
            &c.id,
            format!("campaign id \"{id}\" is used twice; ids must be unique"),
        );
        ok = false;
    }
    let kind = match c.kind.get_ref().as_str() {
        "welcome" => Kind::Welcome,
        "newsletter" => Kind::Newsletter,
        "follow_up" | "follow-up" => Kind::FollowUp,
        "reconfirm" => Kind::Reconfirm,
        other => {
            at(
                &c.kind,
                format!(
                    "unknown campaign kind \"{other}\"; known: welcome, newsletter, follow_up, reconfirm"
                ),
            );
            return None;
        }
    };
    let segment_ref = |s: &Spanned<String>,
                       what: &str,
                       at: &mut dyn FnMut(&dyn SpanLike, String)| {
        if segments.get(s.get_ref()).is_none() {
            at(
                s,
                format!(
                    "unknown segment \"{}\"; known: {} (in {what}; add segments/{}.toml or fix the name)",
                    s.get_ref(),
                    segments.names().join(", "),
                    s.get_ref()
                ),
            );
            false
        } else {
            true
        }
    };
    let template_ref =
        |s: &Spanned<String>, what: &str, at: &mut dyn FnMut(&dyn SpanLike, String)| {
            if !has_template(s.get_ref()) {
                at(
                    s,
                    format!(
                        "unknown template \"{}\" in {what}; create templates/{}.hbs",
                        s.get_ref(),
                        s.get_ref()
                    ),
                );
                false
            } else {
                true
            }
        };
    ok &= template_ref(&c.template, "template", at);
    let audience = match &c.audience {
        Some(a) => {
            ok &= segment_ref(a, "audience", at);
            a.get_ref().clone()
        }
        None => EVERYONE.to_string(),
    };
    let unless = match &c.unless {
        Some(u) => {
            ok &= segment_ref(u, "unless", at);
            Some(u.get_ref().clone())
        }
        None => None,
    };
    let mut sections = Vec::new();
    for s in &c.sections {
        ok &= segment_ref(&s.segment, "section", at);
        ok &= template_ref(&s.template, "section", at);
        sections.push(Section {
            segment: s.segment.get_ref().clone(),
            template: s.template.get_ref().clone(),
        });
    }
    if let Err(e) = handlebars::Template::compile(c.subject.get_ref()) {
        at(
            &c.subject,
            format!("subject is not a valid template: {}", e.reason()),
        );
        ok = false;
    }
    let duration = |d: &Option<Spanned<String>>, at: &mut dyn FnMut(&dyn SpanLike, String)| match d
    {
        Some(d) => match parse_duration(d.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                at(d, format!("delay {:?}: {e}", d.get_ref()));
                None
            }
        },
        None => Some(Duration::ZERO),
    };
    let delay = match (kind, &c.after) {
        (Kind::FollowUp, Some(after)) => duration(&after.get_ref().delay, at).or_else(|| {
            ok = false;
            None
        }),
        _ => duration(&c.delay, at).or_else(|| {
            ok = false;
            None
        }),
    };
    let schedule = match (&c.schedule, kind) {
        (Some(s), Kind::Newsletter) => match parse_cron(s.get_ref()) {
            Ok(cron) => Some(Schedule {
                cron,
                source: s.get_ref().clone(),
            }),
            Err(e) => {
                at(s, format!("schedule {:?}: {e}", s.get_ref()));
                ok = false;
                None
            }
        },
        (Some(s), _) => {
            at(
                s,
                format!(
                    "schedule is for newsletters; a {} campaign is sent by its trigger",
                    kind.as_str()
                ),
            );
            ok = false;
            None
        }
        (None, _) => None,
    };
    if kind != Kind::FollowUp {
        if let Some(after) = &c.after {
            at(after, "after = { ... } is for follow_up campaigns".into());
            ok = false;
        }
    }
    if kind == Kind::FollowUp && c.delay.is_some() {
        at(
            c.delay.as_ref()?,
            "a follow-up's delay goes inside after = { ..., delay = \"3d\" }".into(),
        );
        ok = false;
    }
    let trigger = match (kind, &c.after) {
        (Kind::FollowUp, None) => {
            at(&c.kind, "a follow_up campaign needs after = { event = \"click\", tag = \"...\", delay = \"3d\" }".into());
            ok = false;
            None
        }
        (Kind::FollowUp, Some(after)) => {
            let a = after.get_ref();
            match a.event.get_ref().as_str() {
                "click" => Some(Trigger::Click {
                    tag: a.tag.as_ref().map(|t| t.get_ref().clone()),
                }),
                "open" => Some(Trigger::Open {
                    campaign: a.campaign.as_ref().map(|t| t.get_ref().clone()),
                }),
                "profile_update" => Some(Trigger::ProfileUpdate),
                other if events.iter().any(|e| e == other) => {
                    for extra in [&a.tag, &a.campaign].into_iter().flatten() {
                        at(
                            extra,
                            format!(
                                "\"{other}\" is a reported event: it has neither tag nor campaign"
                            ),
                        );
                        ok = false;
                    }
                    Some(Trigger::Event {
                        name: other.to_string(),
                    })
                }
                other => {
                    let declared = if events.is_empty() {
                        String::new()
                    } else {
                        format!(", or a declared event: {}", events.join(", "))
                    };
                    at(
                        &a.event,
                        format!(
                            "unknown event \"{other}\"; known: click, open, profile_update{declared} (declare your own in [events] names = [...])"
                        ),
                    );
                    ok = false;
                    None
                }
            }
        }
        _ => None,
    };
    let library = match &c.library {
        Some(l) => {
            let n = *l.get_ref().items.get_ref();
            if kind != Kind::Newsletter {
                at(l, "[campaign.library] is for newsletters".into());
                ok = false;
                0
            } else if !(1..=crate::library::MAX_ITEMS as i64).contains(&n) {
                at(
                    &l.get_ref().items,
                    format!(
                        "[campaign.library] items = {n}: use 1 to {}",
                        crate::library::MAX_ITEMS
                    ),
                );
                ok = false;
                0
            } else {
                n as usize
            }
        }
        None => 0,
    };
    if !ok {
        return None;
    }
    Some(Campaign {
        id,
        kind,
        delay: delay?,
        schedule,
        audience,
        subject: c.subject.get_ref().clone(),
        template: c.template.get_ref().clone(),
        sections,
        trigger,
        unless,
        track_opens: c.track_opens,
        library,
    })
}
