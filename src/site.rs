//! The marketer's files as one checked set: `campaigns.toml`, `segments/`, `templates/`
//! and the campaigns that tie them together. `serve` runs one, `check` validates one, and
//! SIGHUP replaces one as a whole.

use std::path::Path;

use crate::campaign::{self, Campaign};
use crate::config::{Diagnostic, Diagnostics, Project};
use crate::library::Library;
use crate::render::Templates;
use crate::segment::Segments;

mod samples;

pub use samples::{Sample, SampleFacts, sample_profiles};

/// The name the confirmation's subject is compiled under (`subject:` + this); campaign ids
/// are letters, digits, `-` and `_`, so it cannot be one of theirs.
pub const CONFIRM_SUBJECT: &str = "[form confirmation]";

/// Everything loaded from a project directory.
#[derive(Debug)]
pub struct Site {
    pub project: Project,
    pub segments: Segments,
    pub templates: Templates,
    pub campaigns: Vec<Campaign>,
    /// `content/*.md`.
    pub library: Library,
}

impl Site {
    /// Loads and cross-checks every file under `dir`, ready to send; all problems are
    /// returned together.
    pub fn load(dir: &Path) -> Result<Site, Diagnostics> {
        Site::load_with(dir, true)
    }

    /// Loads for `check`: templates exactly as written (no CSS inlining), so that the
    /// positions of render errors are positions in the files.
    pub fn load_for_check(dir: &Path) -> Result<Site, Diagnostics> {
        Site::load_with(dir, false)
    }

    fn load_with(dir: &Path, inline_css: bool) -> Result<Site, Diagnostics> {
        let project = Project::load(dir);
        let templates = Templates::load(dir, inline_css);
        let mut all: Vec<Diagnostic> = Vec::new();
        let (project, templates) = match (project, templates) {
            (Ok(p), Ok(t)) => (p, t),
            (p, t) => {
                // Segments are read against the project's form, campaigns and events: with
                // the templates at fault they are checked too; with campaigns.toml at fault
                // they would be checked against nothing and report false mistakes (every
                // declared event "undeclared"), so they wait until it loads.
                let segment_problems = match &p {
                    Ok(p) => Segments::load(dir, &p.form, &campaign::names(p)).err(),
                    Err(_) => None,
                };
                all.extend(p.err().unwrap_or_default());
                all.extend(t.err().unwrap_or_default());
                all.extend(segment_problems.unwrap_or_default());
                return Err(Diagnostics(all));
            }
        };
        let segments = match Segments::load(dir, &project.form, &campaign::names(&project)) {
            Ok(s) => s,
            Err(e) => {
                all.extend(e);
                return Err(Diagnostics(all));
            }
        };
        let topics: Vec<String> = project.topics.iter().map(|t| t.key.clone()).collect();
        let industries: Vec<String> = project
            .form
            .choices(crate::profile::Question::Industry)
            .iter()
            .map(|c| c.value.clone())
            .collect();
        let library = Library::load(
            dir,
            &crate::library::Names {
                topics: &topics,
                segments: &segments
                    .names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
                industries: &industries,
            },
        );
        let campaigns = campaign::build(&project, &segments, &|name| templates.has(name));
        let (campaigns, mut library) = match (campaigns, library) {
            (Ok(c), Ok(l)) => (c, l),
            (c, l) => {
                all.extend(c.err().unwrap_or_default());
                all.extend(l.err().unwrap_or_default());
                return Err(Diagnostics(all));
            }
        };
        let mut templates = templates;
        library.prepare_summaries(|html| templates.prepare_fragment(html));
        for c in &campaigns {
            // Syntax was checked with the campaign; this cannot fail for a built campaign.
            let _ = templates.register_subject(&c.id, &c.subject);
        }
        // The confirmation's subject is compiled once too (a syntax error is left to the
        // send, which reports it with its name).
        let _ = templates.register_subject(CONFIRM_SUBJECT, &project.confirm_subject);
        Ok(Site {
            project,
            segments,
            templates,
            campaigns,
            library,
        })
    }

    /// The campaign with this id.
    pub fn campaign(&self, id: &str) -> Option<&Campaign> {
        self.campaigns.iter().find(|c| c.id == id)
    }
}

impl Site {
    /// What one render of `campaign` needs about `profile`: segment memberships, chosen
    /// sections, the month of the send (`at`, unix seconds), the recipient's links and,
    /// for a campaign with `[campaign.library]`, their library items (`sent`: the URLs of
    /// the items they were sent before).
    pub fn personalise<'a>(
        &self,
        campaign: &Campaign,
        profile: &'a crate::profile::Profile,
        facts: &dyn crate::segment::Facts,
        links: crate::render::PersonalLinks,
        at: i64,
        sent: &[String],
    ) -> crate::render::Personal<'a> {
        let when = chrono::DateTime::from_timestamp(at, 0).unwrap_or_default();
        // Each segment is evaluated once: `in_segment`, the sections, and the worker's
        // audience and `unless` checks all read these memberships.
        let segments: std::collections::BTreeMap<String, bool> = self
            .segments
            .iter()
            .map(|s| (s.name.clone(), s.matches(profile, facts)))
            .collect();
        let library = if campaign.library > 0 {
            let a = &profile.answers;
            self.library.select(
                &crate::library::Reader {
                    topics: a.topics.as_deref().unwrap_or_default(),
                    segments: &segments,
                    industry: a.industry.as_deref(),
                    sent,
                    today: when.date_naive(),
                },
                campaign.library,
            )
        } else {
            Vec::new()
        };
        crate::render::Personal {
            profile,
            library,
            sections: campaign.sections_in(&segments),
            segments,
            month: when.format("%B").to_string(),
            year: chrono::Datelike::year(&when),
            links,
        }
    }
}

/// The running set of files, shared by the web side, the scheduler and the delivery
/// worker; a reload replaces it as a whole and work in progress keeps the set it started with.
#[derive(Debug, Clone)]
pub struct SiteHandle(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Site>>>);

impl SiteHandle {
    /// Shares `site`.
    pub fn new(site: Site) -> SiteHandle {
        SiteHandle(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(site),
        )))
    }

    /// The current set.
    pub fn get(&self) -> std::sync::Arc<Site> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the set (after a successful reload).
    pub fn replace(&self, site: Site) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(site);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_month_and_year_of_the_send_are_the_recipients_to_read() {
        let site = Site::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        let campaign = site.campaign("newsletter").unwrap();
        let profile = crate::profile::Profile {
            id: 1,
            email: crate::profile::Email::parse("ann@example.com").unwrap(),
            status: crate::profile::Status::Subscribed,
            answers: Default::default(),
            confirm_nonce: None,
            pending_nonce: None,
            created_at: 0,
            updated_at: 0,
        };
        let links = crate::render::PersonalLinks::default();
        // 2027-01-15T08:00:00Z
        let p = site.personalise(
            campaign,
            &profile,
            &crate::segment::NoFacts,
            links,
            1_800_000_000,
            &[],
        );
        assert_eq!((p.month.as_str(), p.year), ("January", 2027));
    }
}
