//! Every email rapport sends is built here, and only here: a campaign message (welcome,
//! newsletter, follow-up) for a person, or the confirmation of a subscription. The
//! delivery worker, the web side's confirmation, `rapport preview` and the tests go through
//! the same [`Mailer`], so a header, a footer link or the open pixel is added in one place.
//!
//! A campaign message is built in three steps, which the worker needs apart (it may render
//! twice while it stores links it had not seen, see `delivery::worker`):
//! [`Mailer::person`] (segments, sections, personal links), [`Mailer::render`] (templates,
//! with each link passed through a [`LinkSeam`]) and [`Mailer::finish`] (the open pixel when
//! opens are tracked, `List-Unsubscribe` headers, MIME). [`Mailer::campaign`] does all three.

mod check;

pub use check::check;

use serde_json::json;

use crate::campaign::Campaign;
use crate::profile::Profile;
use crate::render::{Composed, LinkSeam, MessageError, Personal, RenderError, Rendered, compose};
use crate::segment::Facts;
use crate::site::Site;
use crate::track::{Origin, Purpose, Signer, personal_links};

/// A message that could not be built; the text names the template or part at fault.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// Builds messages: the signer for the links they carry and the public URL those links
/// start with. Cheap to clone. Each build is told whether the transport takes 8-bit bodies
/// at that moment (an SMTP pool learns it on connecting; see `delivery::Transport`).
#[derive(Clone)]
pub struct Mailer {
    signer: Signer,
    public_url: String,
    /// `RAPPORT_BOUNCE_DOMAIN`: sent messages get a VERP envelope sender there.
    bounce_domain: Option<String>,
}

/// What a message is built for: a look at it, or the delivery that sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// `preview` and `check`: no open pixel, the `from` address as envelope sender.
    Preview,
    /// The message of this delivery: the open pixel signing it when the campaign tracks
    /// opens, and the envelope sender naming it when a bounce domain is set.
    Delivery(i64),
}

impl Mailer {
    /// A mailer whose links start with `public_url` (no trailing slash).
    pub fn new(signer: Signer, public_url: impl Into<String>) -> Mailer {
        Mailer {
            signer,
            public_url: public_url.into(),
            bounce_domain: None,
        }
    }

    /// Sends with VERP envelope senders `b-{token}@domain` (see `track::verp`), so that
    /// bounces and complaints come back naming their delivery.
    pub fn with_bounce_domain(mut self, domain: Option<String>) -> Mailer {
        self.bounce_domain = domain;
        self
    }

    /// The envelope sender of a message: the VERP address of its delivery when a bounce
    /// domain is set, the `from` address otherwise (`None`).
    fn envelope_sender(&self, sending: Sending) -> Option<lettre::Address> {
        let (Some(domain), Sending::Delivery(id)) = (&self.bounce_domain, sending) else {
            return None;
        };
        let local = self.signer.bounce_local_part(id);
        lettre::Address::new(local, domain).ok()
    }

    /// The prefix of every link in the messages.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// `/c/TOKEN` for the stored link `link_id` in the message of delivery `delivery`: the
    /// delivery and the link, signed, so a click can only ever redirect to a stored URL.
    pub fn click_url(&self, delivery: i64, link_id: i64) -> String {
        let token = self
            .signer
            .sign(Purpose::Click, delivery, None, &link_id.to_string());
        format!("{}/c/{token}", self.public_url)
    }

    /// What one message of `campaign` needs about `profile` at `at` (unix seconds): segment
    /// memberships, chosen sections, and the personal links (profile centre, unsubscribe,
    /// feedback), signed for `origin` so that an unsubscribe or a vote counts for it, and
    /// their library items (`sent`: the URLs of the items they were sent before).
    #[allow(clippy::too_many_arguments)]
    pub fn person<'a>(
        &self,
        site: &Site,
        campaign: &Campaign,
        profile: &'a Profile,
        facts: &dyn Facts,
        origin: Origin<'_>,
        at: i64,
        sent: &[String],
    ) -> Personal<'a> {
        let mailto = site.project.sender.from.email.to_string();
        let links = personal_links(&self.signer, &self.public_url, &mailto, profile.id, origin);
        site.personalise(campaign, profile, facts, links, at, sent)
    }

    /// Renders `campaign` for `person`; every link of the message goes through `seam`.
    pub fn render(
        &self,
        site: &Site,
        campaign: &Campaign,
        person: &Personal<'_>,
        seam: &mut dyn LinkSeam,
    ) -> Result<Rendered, MailError> {
        Ok(site
            .templates
            .render_campaign(campaign, &site.project.sender, person, seam)?)
    }

    /// The message as sent: the open pixel (for a delivery, when the campaign's message
    /// carries one: [`Campaign::pixel`]), `List-Unsubscribe` with the one-click POST of
    /// RFC 8058, the envelope sender (see [`Sending`]) and the MIME message.
    pub fn finish(
        &self,
        site: &Site,
        campaign: &Campaign,
        person: &Personal<'_>,
        mut r: Rendered,
        sending: Sending,
        eight_bit: bool,
    ) -> Result<Composed, MailError> {
        if let Sending::Delivery(delivery) = sending
            && campaign.pixel(&r.text)
        {
            let open = self.signer.sign(Purpose::Open, delivery, None, "");
            let pixel = format!(
                "<img src=\"{}/o/{open}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">",
                self.public_url
            );
            insert_before_body_end(&mut r.html, &pixel);
        }
        let headers = [
            (
                "List-Unsubscribe",
                format!(
                    "<{}>, <{}>",
                    person.links.unsubscribe_url, person.links.unsubscribe_mailto
                ),
            ),
            (
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".to_string(),
            ),
        ];
        let p = person.profile;
        Ok(compose(
            &site.project.sender,
            self.envelope_sender(sending),
            &p.email,
            p.answers.name.as_deref(),
            &r.subject,
            &r.html,
            Some(r.text),
            &headers,
            eight_bit,
        )?)
    }

    /// [`Mailer::render`] then [`Mailer::finish`].
    pub fn campaign(
        &self,
        site: &Site,
        campaign: &Campaign,
        person: &Personal<'_>,
        seam: &mut dyn LinkSeam,
        sending: Sending,
        eight_bit: bool,
    ) -> Result<Composed, MailError> {
        let r = self.render(site, campaign, person, seam)?;
        self.finish(site, campaign, person, r, sending, eight_bit)
    }

    /// The confirmation of a subscription request, valid for `ttl` seconds from `now`, as
    /// the person stands: for someone not subscribed (whatever their status: confirming is
    /// how anyone comes back), the link that confirms (and applies the answers of the
    /// request, see `Profile::confirmation_nonce`); for someone already subscribed, a note
    /// with their profile centre. `sending` gives the envelope sender, as for campaign
    /// messages.
    pub fn confirmation(
        &self,
        site: &Site,
        profile: &Profile,
        sending: Sending,
        ttl: i64,
        now: i64,
        eight_bit: bool,
    ) -> Result<Composed, MailError> {
        let already_subscribed = profile.status == crate::profile::Status::Subscribed;
        let nonce = profile.confirmation_nonce();
        let confirm = self
            .signer
            .sign(Purpose::Confirm, profile.id, Some(now + ttl), &nonce);
        let centre = self.signer.sign(Purpose::Profile, profile.id, None, "");
        let sender = &site.project.sender;
        let days = (ttl + 86_399) / 86_400;
        let mut ctx = json!({
            "first_name": profile.answers.first_name(),
            "name": profile.answers.name,
            "email": profile.email.as_str(),
            "sender_name": sender.name(),
            "postal_address": sender.postal_address,
            "confirm_url": format!("{}/confirm/{confirm}", self.public_url),
            "profile_url": format!("{}/profile/{centre}", self.public_url),
            "valid_days": days,
            "valid_for": if days == 1 { "1 day".to_string() } else { format!("{days} days") },
            "already_subscribed": already_subscribed,
            "answers_waiting": profile.pending_nonce.is_some(),
        });
        let subject = if already_subscribed {
            format!("You are already subscribed to {}", sender.name())
        } else {
            site.templates.render_subject(
                crate::site::CONFIRM_SUBJECT,
                "[form] confirm_subject",
                &site.project.confirm_subject,
                &handlebars::Context::from(ctx.clone()),
            )?
        };
        ctx["subject"] = json!(subject);
        let html = site.templates.render("confirmation", &ctx)?;
        let text = if site.templates.has("confirmation.txt") {
            Some(site.templates.render("confirmation.txt", &ctx)?)
        } else {
            None
        };
        Ok(compose(
            sender,
            self.envelope_sender(sending),
            &profile.email,
            profile.answers.name.as_deref(),
            &subject,
            &html,
            text,
            &[],
            eight_bit,
        )?)
    }
}

/// `rapport preview`: what `profile` would receive from `campaign` now, composed as the
/// worker composes it, with links as written (a preview must not create tracked links or
/// count as an open), and the rendered parts for the HTML and text formats.
pub async fn preview(
    mailer: &Mailer,
    store: &crate::store::Store,
    site: &Site,
    campaign: &Campaign,
    profile: &Profile,
    now: i64,
) -> Result<(Composed, Rendered), PreviewError> {
    let facts = store.event_facts(profile.id, now).await?;
    let sent = if campaign.library > 0 {
        store
            .library_sent(&[profile.id])
            .await?
            .remove(&profile.id)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let person = mailer.person(
        site,
        campaign,
        profile,
        &facts,
        Origin::Campaign(&campaign.id),
        now,
        &sent,
    );
    let rendered = mailer.render(
        site,
        campaign,
        &person,
        &mut crate::render::KeepLinks::default(),
    )?;
    let composed = mailer.finish(
        site,
        campaign,
        &person,
        rendered.clone(),
        Sending::Preview,
        true,
    )?;
    Ok((composed, rendered))
}

/// A preview that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Inserts `fragment` just before the document's last `</body>` (any case), or at the end
/// when there is none.
fn insert_before_body_end(html: &mut String, fragment: &str) {
    let at = html
        .as_bytes()
        .windows(7)
        .rposition(|w| w.eq_ignore_ascii_case(b"</body>"))
        .unwrap_or(html.len());
    html.insert_str(at, fragment);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_goes_before_the_last_body_end_whatever_its_case() {
        let mut h = "<html><BODY><p>x</p></BODY></html>".to_string();
        insert_before_body_end(&mut h, "<img>");
        assert_eq!(h, "<html><BODY><p>x</p><img></BODY></html>");
        let mut h = "<p>no body</p>".to_string();
        insert_before_body_end(&mut h, "<img>");
        assert_eq!(h, "<p>no body</p><img>");
    }
}
