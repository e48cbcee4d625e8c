//! Personalised campaign messages: the template for one person with their answers,
//! segments and sections, wrapped in the email layout and footer, links passed through the
//! tracking seam, CSS inlined, and a text part that says the same thing.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use handlebars::{Context, Handlebars};

use super::links::Slot;
use super::{RenderError, Templates, html_to_text};
use crate::campaign::{Campaign, Section};
use crate::config::Sender;
use crate::profile::Profile;

/// The seam every link of a campaign message goes through. The tracking side turns a link
/// into a tracked redirect; previews and checks keep it as it is.
pub trait LinkSeam {
    /// The URL to put in the message for `url` (with its `data-tag`, if any).
    fn track(&mut self, url: &str, tag: Option<&str>) -> String;
}

/// A seam that leaves links as they are and lists them.
#[derive(Debug, Default)]
pub struct KeepLinks {
    pub links: Vec<(String, Option<String>)>,
}

impl LinkSeam for KeepLinks {
    fn track(&mut self, url: &str, tag: Option<&str>) -> String {
        self.links.push((url.to_string(), tag.map(str::to_string)));
        url.to_string()
    }
}

/// The links every message carries for its recipient.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PersonalLinks {
    pub profile_url: String,
    pub unsubscribe_url: String,
    pub feedback_yes_url: String,
    pub feedback_no_url: String,
    /// The sunset's "keep me subscribed" page; a (human) click on it in the re-permission
    /// message keeps the person.
    pub keep_url: String,
    /// `List-Unsubscribe` mailto target.
    pub unsubscribe_mailto: String,
}

/// Everything one render needs to know about the recipient.
#[derive(Debug, Clone)]
pub struct Personal<'a> {
    pub profile: &'a Profile,
    /// Segment name → whether the person is in it (for `in_segment`).
    pub segments: BTreeMap<String, bool>,
    /// The sections chosen for them, in order.
    pub sections: Vec<Section>,
    /// Month name of the send ("November").
    pub month: String,
    pub year: i32,
    pub links: PersonalLinks,
    /// The library items chosen for them (`[campaign.library]`), most relevant first.
    pub library: Vec<std::sync::Arc<crate::library::Item>>,
}

/// A rendered campaign message.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// The variables templates see; `templates/` documentation lists the same names. Where
/// links are `prepared` at load, the render's own links (`keep_url`, each library item's
/// `url`) are slot markers (see [`slots`]) and a library item's `summary` is its prepared
/// HTML.
fn context(
    campaign: &Campaign,
    sender: &Sender,
    p: &Personal<'_>,
    prepared: Option<&super::links::PreparedLinks>,
) -> Value {
    let slot = |k: usize, url: &str| match prepared {
        Some(links) => links.slot_marker(k).into_owned(),
        None => url.to_string(),
    };
    // Each item's values are made at load; a message borrows a copy with its slot in
    // (given back after the render, see `Templates::render_campaign`).
    let library: Vec<Value> = p
        .library
        .iter()
        .enumerate()
        .map(|(i, item)| match prepared {
            Some(links) => item.lend_values(&links.slot_marker(1 + i)),
            None => {
                let mut values = item.template_values().clone();
                if let (Some(v), Some(_)) = (values.get_mut("summary"), &item.prepared_summary) {
                    *v = Value::String(item.summary.clone());
                }
                Value::Object(values)
            }
        })
        .collect();
    let a = &p.profile.answers;
    let mut ctx = json!({
        "profile": {
            "email": p.profile.email.as_str(),
            "status": p.profile.status,
            "name": a.name, "role": a.role, "products": a.products, "employees": a.employees,
            "industry": a.industry, "business_need": a.business_need, "challenge": a.challenge,
            "pcs": a.pcs, "servers": a.servers, "engagement": a.engagement,
            "topics": a.topics, "frequency": a.frequency,
        },
        "email": p.profile.email.as_str(),
        "name": a.name,
        "first_name": a.first_name(),
        "month": p.month,
        "year": p.year,
        "campaign": { "id": campaign.id },
        "sections": p.sections,
        "segments": p.segments,
        "sender": { "name": sender.name(), "postal_address": sender.postal_address },
        "profile_url": p.links.profile_url,
        "unsubscribe_url": p.links.unsubscribe_url,
        "feedback_yes_url": p.links.feedback_yes_url,
        "feedback_no_url": p.links.feedback_no_url,
        "keep_url": slot(0, &p.links.keep_url),
    });
    // Put in afterwards: inside `json!` the items' values would be serialised into new ones
    // (a deep copy of every item, per message).
    ctx["library"] = Value::Array(library);
    ctx
}

/// The links of a render that only the render knows, as (URL, tag): slot 0 is the keep
/// link (tag `keep`), slot 1 + i the person's i-th library item (tagged with the item's
/// first topic, or `library`).
fn slots<'a>(p: &'a Personal<'_>) -> Vec<Slot<'a>> {
    std::iter::once((p.links.keep_url.as_str(), Some("keep")))
        .chain(p.library.iter().map(|item| {
            let tag = item.topics.first().map_or("library", String::as_str);
            (item.url.as_str(), Some(tag))
        }))
        .collect()
}

/// The seam of a render whose links are found at send time: a slot's link gets the slot's
/// tag where the template wrote none, as it does where links are prepared at load.
struct SlotTags<'a> {
    seam: &'a mut dyn LinkSeam,
    slots: &'a [Slot<'a>],
}

impl LinkSeam for SlotTags<'_> {
    fn track(&mut self, url: &str, tag: Option<&str>) -> String {
        let tag = tag.or_else(|| {
            self.slots
                .iter()
                .find(|(u, _)| *u == url)
                .and_then(|(_, t)| *t)
        });
        self.seam.track(url, tag)
    }
}

impl Templates {
    /// Renders `campaign` for one person. Links in the HTML go through `seam`, except those
    /// marked `data-untracked` (the footer's own links); `data-tag` is passed on and removed.
    pub fn render_campaign(
        &self,
        campaign: &Campaign,
        sender: &Sender,
        person: &Personal<'_>,
        seam: &mut dyn LinkSeam,
    ) -> Result<Rendered, RenderError> {
        // One Context for every template of the message: Handlebars would otherwise
        // serialise the whole context again for each render.
        let slots = slots(person);
        let mut ctx =
            handlebars::Context::from(context(campaign, sender, person, self.links.as_ref()));
        let subject = self.render_subject(
            &campaign.id,
            &format!("subject of {}", campaign.id),
            &campaign.subject,
            &ctx,
        )?;
        ctx.data_mut()["subject"] = Value::String(subject.clone());
        let text_name = format!("{}.txt", campaign.template);
        let own_text = self.has(&text_name);
        // Marked only where the text part is derived from the HTML (see `shape`).
        let marking = self.marking.as_ref().filter(|_| !own_text);
        let hbs = marking.unwrap_or(&self.hbs);
        let body = render_with(hbs, &campaign.template, &ctx)?;
        ctx.data_mut()["body"] = Value::String(body);
        let html = render_with(hbs, "email-layout", &ctx)?;
        let (html, shaped) = match marking.map(|_| super::shape::split(&html)) {
            None => (html, None),
            Some(Some(split)) => (split.html, Some((split.shape, split.values))),
            Some(None) => (super::shape::strip(&html), None),
        };
        // Each link's (original, new) URLs: by marker number where the links were prepared
        // at load time, else as the send-time rewrite found them.
        let mut tracked = Vec::new();
        let mut replaced = Vec::new();
        let html = match &self.links {
            Some(prepared) => prepared.fill(&html, seam, &mut tracked, &slots),
            None => super::links::rewrite_links(
                &html,
                &mut SlotTags {
                    seam,
                    slots: &slots,
                },
                &mut replaced,
            ),
        }
        .map_err(|e| RenderError::other(&campaign.template, e))?;
        let html = if self.inline_at_send {
            super::inline::inline_document(&html)
                .map_err(|e| RenderError::other("email-layout", e))?
        } else {
            html
        };
        let text = if own_text {
            let mut text = self.render_plain(&text_name, ctx.data())?;
            if let Some(prepared) = &self.links {
                text = prepared.fill_slots(&text, &tracked, &slots);
            }
            let pairs: Vec<(&str, &str)> = match &self.links {
                Some(prepared) => tracked
                    .iter()
                    .map(|(n, new)| (prepared.url(*n, &slots), new.as_str()))
                    .collect(),
                None => replaced
                    .iter()
                    .map(|(url, new)| (url.as_str(), new.as_str()))
                    .collect(),
            };
            for (from, to) in pairs {
                text = text.replace(from, to);
            }
            let footer = self.render_ctx("footer", &ctx)?;
            text.push_str("\n\n");
            text.push_str(&html_to_text(&footer));
            text
        } else {
            shaped
                .zip(self.links.as_ref())
                .and_then(|((shape, values), prepared)| {
                    let text = self.shapes.text_of(&shape, nanohtml2text::html2text);
                    let text = prepared.fill_text(&text, &tracked)?;
                    let text = super::shape::fill_values(&text, &values)?;
                    Some(super::message::urls_on_own_lines(&text))
                })
                .unwrap_or_else(|| html_to_text(&html))
        };
        // The items' values go back to the items, for the next message to borrow.
        if self.links.is_some()
            && let Value::Array(values) = std::mem::take(&mut ctx.data_mut()["library"])
        {
            for (item, values) in person.library.iter().zip(values) {
                item.give_back(values);
            }
        }
        Ok(Rendered {
            subject,
            html,
            text,
        })
    }
}

impl Templates {
    fn render_ctx(&self, name: &str, ctx: &Context) -> Result<String, RenderError> {
        render_with(&self.hbs, name, ctx)
    }
}

/// Renders template `name` of `hbs` with a prepared context.
fn render_with(
    hbs: &Handlebars<'static>,
    name: &str,
    ctx: &Context,
) -> Result<String, RenderError> {
    hbs.render_with_context(name, ctx)
        .map_err(|source| RenderError {
            name: name.to_string(),
            source,
        })
}

impl RenderError {
    /// A failure after Handlebars (link rewriting, CSS, text part).
    pub fn other(name: &str, message: impl Into<String>) -> RenderError {
        RenderError {
            name: name.to_string(),
            source: handlebars::RenderErrorReason::Other(message.into()).into(),
        }
    }
}
