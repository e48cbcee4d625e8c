//! Rendering: the Handlebars registry built from the marketer's `templates/` over the
//! built-in defaults, and the assembly of email messages (HTML + derived text part).

mod campaign;
mod helpers;
mod inline;
mod library_block;
mod links;
mod message;
mod partials;
mod shape;
mod structure;

use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde::Serialize;

use crate::config::Diagnostic;

pub use campaign::{KeepLinks, LinkSeam, Personal, PersonalLinks, Rendered};
pub use message::{Composed, MessageError, compose, html_to_text};

/// The templates rapport ships; a file of the same name under `templates/` replaces one.
/// They are the files of this repository's example setup, compiled in so that a project
/// directory needs only the templates it changes.
const BUILTIN: &[(&str, &str)] = &[
    (
        "layout",
        include_str!("../../templates/partials/layout.hbs"),
    ),
    ("field", include_str!("../../templates/partials/field.hbs")),
    (
        "error-summary",
        include_str!("../../templates/partials/error-summary.hbs"),
    ),
    (
        "pages/subscribe",
        include_str!("../../templates/pages/subscribe.hbs"),
    ),
    ("pages/step", include_str!("../../templates/pages/step.hbs")),
    (
        "pages/confirm",
        include_str!("../../templates/pages/confirm.hbs"),
    ),
    (
        "pages/message",
        include_str!("../../templates/pages/message.hbs"),
    ),
    (
        "confirmation",
        include_str!("../../templates/confirmation.hbs"),
    ),
    (
        "email-layout",
        include_str!("../../templates/partials/email-layout.hbs"),
    ),
    (
        "footer",
        include_str!("../../templates/partials/footer.hbs"),
    ),
    (
        "pages/unsubscribe",
        include_str!("../../templates/pages/unsubscribe.hbs"),
    ),
    (
        "pages/feedback",
        include_str!("../../templates/pages/feedback.hbs"),
    ),
    (
        "pages/admin",
        include_str!("../../templates/pages/admin.hbs"),
    ),
];

/// The folder of templates inside the project directory.
pub const TEMPLATES_DIR: &str = "templates";

/// A template that failed to render (a missing variable in strict mode, a helper error).
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {source}")]
pub struct RenderError {
    pub name: String,
    #[source]
    pub source: handlebars::RenderError,
}

/// All templates, ready to render. Strict mode: a variable that does not exist is an error,
/// not an empty string.
#[derive(Debug)]
pub struct Templates {
    hbs: Handlebars<'static>,
    /// For subjects and text parts: strict, no HTML escaping.
    plain: Handlebars<'static>,
    /// Template name → the file it was read from.
    files: std::collections::HashMap<String, PathBuf>,
    /// Some email template could not be CSS-inlined at load time (see `inline`), so every
    /// campaign render inlines the whole document instead.
    inline_at_send: bool,
    /// The email templates' links, found at load time (see `links`); `None` when some
    /// link is written by data, and every campaign render parses its HTML for links.
    links: Option<links::PreparedLinks>,
    /// `hbs` with an escape function that marks the values it writes, for campaign
    /// messages whose text part is derived once per shape (see `shape`); `None` where the
    /// templates do not allow it.
    marking: Option<Handlebars<'static>>,
    /// The text of each shape met so far.
    shapes: shape::ShapeTexts,
}

/// Templates that are pages or page parts, not email: never CSS-inlined.
fn is_email_template(name: &str) -> bool {
    !name.starts_with("pages/")
        && !name.ends_with(".txt")
        && !matches!(name, "layout" | "field" | "error-summary" | "confirmation")
}

impl Templates {
    /// Registers the built-in templates, then every `*.hbs` below `DIR/templates`
    /// (`partials/NAME.hbs` as partial `NAME`, anything else by its path without `.hbs`).
    ///
    /// With `inline_css`, email templates get the layout's CSS inlined once here (see
    /// `inline`); `check` loads without it so that positions in messages match the files.
    pub fn load(dir: &Path, inline_css: bool) -> Result<Templates, Vec<Diagnostic>> {
        Templates::load_with(dir, inline_css, inline_css)
    }

    /// [`Templates::load`], choosing separately whether links are found at load time (see
    /// `links`; with `false`, every campaign render parses its HTML for links; the test
    /// comparing the two uses it).
    fn load_with(
        dir: &Path,
        inline_css: bool,
        links_at_load: bool,
    ) -> Result<Templates, Vec<Diagnostic>> {
        let mut hbs = Handlebars::new();
        hbs.set_strict_mode(true);
        helpers::register(&mut hbs);
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        helpers::register(&mut plain);
        for (name, src) in BUILTIN {
            hbs.register_template_string(name, *src)
                .expect("built-in templates parse");
        }
        let mut sources: std::collections::BTreeMap<String, String> = BUILTIN
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        let root = dir.join(TEMPLATES_DIR);
        let mut problems = Vec::new();
        let mut files = Vec::new();
        let mut by_name = std::collections::HashMap::new();
        if root.is_dir() {
            collect_hbs(&root, &mut files, &mut problems);
        }
        files.sort();
        let mut read = Vec::new();
        for path in files {
            let Some(name) = template_name(&root, &path) else {
                continue;
            };
            by_name.insert(name.clone(), path.clone());
            match crate::config::read_text(&path) {
                Ok(src) => {
                    sources.insert(name.clone(), src.clone());
                    read.push((name, path, src));
                }
                Err(e) => problems.push(Diagnostic::file(
                    &path,
                    format!("cannot read template: {e}"),
                )),
            }
        }
        // Recursion and depth first: Handlebars would overflow the stack parsing or
        // rendering them (see `structure`).
        for p in structure::check(&sources) {
            let src = &sources[&p.template];
            problems.push(match by_name.get(&p.template) {
                Some(path) => Diagnostic::at(path, src, p.at, p.message),
                None => Diagnostic::file(
                    &PathBuf::from(format!("(built-in template {})", p.template)),
                    p.message,
                ),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for (name, path, src) in read {
            // Text parts (`NAME.txt.hbs`) render without HTML escaping.
            if name.ends_with(".txt") {
                let _ = plain.register_template_string(&name, &src);
            }
            if let Err(e) = hbs.register_template_string(&name, &src) {
                problems.push(syntax_problem(&path, &src, &e));
            }
        }
        // A section's links without a `data-tag` get the section's name (`sections/training`:
        // `training`), so the links export tells sections apart (after the checks above,
        // so that their positions are the file's).
        if problems.is_empty() {
            for (name, src) in sources.iter_mut() {
                let Some(section) = name.strip_prefix("sections/") else {
                    continue;
                };
                if let Some(tagged) = links::tag_untagged(src, section) {
                    *src = tagged;
                    hbs.register_template_string(name, src.as_str())
                        .expect("a tag between attributes keeps the syntax");
                }
            }
        }
        // CSS inlining once per template, where it is lossless (see `inline`).
        let mut inline_at_send = false;
        // Email templates as they will be registered (CSS inlined where lossless).
        let mut email = std::collections::BTreeMap::new();
        if problems.is_empty() && inline_css {
            let css = inline::style_blocks(&sources["email-layout"]);
            for (name, src) in sources.iter().filter(|(n, _)| is_email_template(n)) {
                let inlined = if name == "email-layout" {
                    inline::body_range(src).and_then(|(a, b)| {
                        let body = inline::pre_inline(&src[a..b], &css)?;
                        Some(format!("{}{body}{}", &src[..a], &src[b..]))
                    })
                } else {
                    inline::pre_inline(src, &css)
                };
                if inlined.is_none() {
                    tracing::debug!(template = %name, "CSS will be inlined at send time");
                    inline_at_send = true;
                }
                email.insert(name.clone(), inlined.unwrap_or_else(|| src.clone()));
            }
        }
        // Links found once here where every link is written out in the templates.
        let mut links = (links_at_load && !email.is_empty()).then(links::PreparedLinks::default);
        let mut marked = std::collections::BTreeMap::new();
        if let Some(found) = links.as_mut() {
            for (name, src) in &email {
                match found.prepare(src, name == "email-layout") {
                    Some(m) => {
                        marked.insert(name.clone(), m);
                    }
                    None => {
                        tracing::debug!(template = %name, "links will be found at send time");
                        links = None;
                        break;
                    }
                }
            }
        }
        let prepared = if links.is_some() { marked } else { email };
        let shapeable = links.is_some() && prepared.values().all(|s| shape::template_allows(s));
        for (name, src) in &prepared {
            hbs.register_template_string(name, src)
                .expect("inlining and link markers keep the syntax");
        }
        partials::inline_into_layout(&mut hbs, |name| {
            prepared
                .get(name)
                .or_else(|| sources.get(name))
                .map(String::as_str)
        });
        // The library blocks of templates rendered on their own (a campaign's: not a
        // partial, not a section) write each item's output once (see `library_block`).
        let partials = root.join("partials");
        let is_partial = |name: &str| match by_name.get(name) {
            Some(path) => path.starts_with(&partials),
            None => !name.contains('/') && BUILTIN.iter().any(|(n, _)| *n == name),
        };
        let library_blocks = library_block::prepare(&mut hbs, |name| {
            is_email_template(name) && !name.starts_with("sections/") && !is_partial(name)
        });
        let marking = shapeable.then(|| {
            let mut marking = hbs.clone();
            marking.register_escape_fn(shape::marking_escape);
            // Its own kept output: the same item writes differently marked.
            library_block::register(&mut marking, library_blocks);
            marking
        });
        if problems.is_empty() {
            Ok(Templates {
                hbs,
                plain,
                files: by_name,
                inline_at_send,
                links,
                marking,
                shapes: shape::ShapeTexts::default(),
            })
        } else {
            Err(problems)
        }
    }

    /// `html` (a library item's summary, free of control characters) with its links
    /// prepared like the templates' (see `links`); `None` when links are found at send time
    /// (the summary is then sent as written and its links are found with the rest).
    pub fn prepare_fragment(&mut self, html: &str) -> Option<String> {
        self.links.as_mut()?.prepare_fragment(html)
    }

    /// Whether a template of this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.hbs.has_template(name)
    }

    /// Renders template `name` with `data`.
    pub fn render<T: Serialize>(&self, name: &str, data: &T) -> Result<String, RenderError> {
        self.hbs.render(name, data).map_err(|source| RenderError {
            name: name.to_string(),
            source,
        })
    }

    /// Compiles a subject once (`subject:ID`: a campaign's, or the confirmation's) so that
    /// each send only renders it.
    pub fn register_subject(&mut self, id: &str, subject: &str) -> Result<(), String> {
        self.plain
            .register_template_string(&subject_name(id), subject)
            .map_err(|e| e.to_string())
    }

    /// Whether CSS is inlined at send time because some email template could not be inlined
    /// losslessly at load time (slower; see `inline`).
    pub fn inlines_at_send(&self) -> bool {
        self.inline_at_send
    }

    /// Renders a text template (`NAME.txt`) without HTML escaping.
    pub fn render_plain<T: Serialize>(&self, name: &str, data: &T) -> Result<String, RenderError> {
        self.plain.render(name, data).map_err(|source| RenderError {
            name: name.to_string(),
            source,
        })
    }

    /// The file a template came from, for messages (`None` for built-in templates).
    pub fn file_of(&self, name: &str) -> Option<&PathBuf> {
        self.files.get(name)
    }

    /// Renders the subject registered as `id` by [`Templates::register_subject`], or, when
    /// it could not be registered, `template` itself (whose error then names `label`).
    pub fn render_subject(
        &self,
        id: &str,
        label: &str,
        template: &str,
        ctx: &handlebars::Context,
    ) -> Result<String, RenderError> {
        let name = subject_name(id);
        if !self.plain.has_template(&name) {
            return self.render_text(label, template, ctx.data());
        }
        self.plain
            .render_with_context(&name, ctx)
            .map_err(|source| RenderError { name, source })
    }

    /// Renders a template given as text (subjects) with `data`, HTML escaping off.
    pub fn render_text<T: Serialize>(
        &self,
        label: &str,
        template: &str,
        data: &T,
    ) -> Result<String, RenderError> {
        self.plain
            .render_template(template, data)
            .map_err(|source| RenderError {
                name: label.to_string(),
                source,
            })
    }
}

/// The name a subject is compiled under (see [`Templates::register_subject`]).
fn subject_name(id: &str) -> String {
    format!("subject:{id}")
}

fn collect_hbs(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Diagnostic::file(dir, format!("cannot read folder: {e}")));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_hbs(&path, out, problems);
        } else if path.extension().is_some_and(|e| e == "hbs") {
            out.push(path);
        }
    }
}

/// `templates/partials/footer.hbs` → `footer`; `templates/sections/training.hbs` →
/// `sections/training`; `templates/welcome.txt.hbs` → `welcome.txt`.
fn template_name(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let s = rel.to_str()?.replace('\\', "/");
    let s = s.strip_suffix(".hbs")?;
    Some(s.strip_prefix("partials/").unwrap_or(s).to_string())
}

/// Where and what Handlebars' refusal of a template is. A block never closed gets its own
/// message at the block that opens it: Handlebars reports it at the end of the file as a
/// list of the grammar's rules.
fn syntax_problem(path: &Path, src: &str, e: &handlebars::TemplateError) -> Diagnostic {
    use handlebars::TemplateErrorReason;
    if let (TemplateErrorReason::InvalidSyntax(_), Some(block)) =
        (e.reason(), structure::unclosed_block(src))
    {
        let message = format!(
            "template syntax error: {} is never closed; close it with {}",
            block.opener, block.closer
        );
        return Diagnostic::at(path, src, block.at, message);
    }
    let (line, col) = e.pos().unwrap_or((1, 1));
    Diagnostic {
        file: path.to_path_buf(),
        line,
        col,
        message: format!("template syntax error: {}", e.reason()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_saved_with_a_byte_order_mark_renders_without_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        let file = dir.path().join("templates/hello.hbs");
        std::fs::write(&file, "\u{feff}<p>Hello {{name}}</p>").unwrap();
        let t = Templates::load(dir.path(), false).unwrap();
        let out = t
            .render("hello", &serde_json::json!({ "name": "Ann" }))
            .unwrap();
        assert_eq!(out, "<p>Hello Ann</p>");
    }

    #[test]
    fn example_templates_are_inlined_at_load() {
        let t = Templates::load(Path::new(env!("CARGO_MANIFEST_DIR")), true).unwrap();
        assert!(
            !t.inlines_at_send(),
            "every example email template inlines losslessly"
        );
        let out = t
            .render("sections/training", &serde_json::json!({}))
            .unwrap();
        assert!(out.contains("<h2 style="), "{out}");
    }

    /// Numbers each link and puts characters in it that must be attribute-encoded.
    struct Numbered(Vec<(String, Option<String>)>);
    impl LinkSeam for Numbered {
        fn track(&mut self, url: &str, tag: Option<&str>) -> String {
            self.0.push((url.to_string(), tag.map(str::to_string)));
            format!("https://t.example/c/{}?a=1&b=\"2\"", self.0.len())
        }
    }

    /// The personal links of profile `id` in delivery `delivery`, signed as a send signs
    /// them.
    fn links(id: i64, delivery: i64) -> PersonalLinks {
        let signer = crate::track::Signer::new(b"test secret test secret test sec");
        crate::track::personal_links(
            &signer,
            "https://news.example",
            "hello@example.com",
            id,
            crate::track::Origin::Delivery(delivery),
        )
    }

    #[test]
    fn links_found_at_load_render_the_same_as_links_found_at_send() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let prepared = crate::site::Site::load(root).unwrap();
        let mut parsed = crate::site::Site::load(root).unwrap();
        assert!(prepared.templates.links.is_some(), "the examples qualify");
        assert!(
            prepared.templates.marking.is_some(),
            "and their text parts are derived by shape"
        );
        parsed.templates = Templates::load_with(root, true, false).unwrap();
        assert!(parsed.templates.links.is_none());
        // Every campaign for the check's sample people (one per segment), with names that
        // hold markup, a marker character of either kind, or nothing a shape would refuse:
        // the same HTML and text, byte for byte, as parsing each message.
        let (samples, _) = crate::site::sample_profiles(&prepared);
        let mut tracked = std::collections::BTreeSet::new();
        let names = [
            "Ann <b>\u{1}Lee</b>",
            "Ann & \"Lee\" \u{FDD0}",
            "https://news.example/profile/x",
            "  Ann   Lee ",
        ];
        for (mut sample, name) in samples
            .into_iter()
            .flat_map(|s| names.map(|n| (s.clone(), n)))
        {
            sample.profile.answers.name = Some(name.into());
            for campaign in &prepared.campaigns {
                let render = |site: &crate::site::Site| {
                    let person = site.personalise(
                        campaign,
                        &sample.profile,
                        &sample.facts,
                        links(7, 3),
                        1_800_000_000,
                        &[],
                    );
                    let mut seam = Numbered(Vec::new());
                    let r = site
                        .templates
                        .render_campaign(campaign, &site.project.sender, &person, &mut seam)
                        .unwrap();
                    (r.html, r.text, seam.0)
                };
                let (a, b) = (render(&prepared), render(&parsed));
                if !a.2.is_empty() {
                    tracked.insert(campaign.id.clone());
                }
                assert_eq!(a, b, "campaign {} for {}", campaign.id, sample.label);
            }
        }
        for campaign in &prepared.campaigns {
            assert!(
                tracked.contains(&campaign.id),
                "{} has tracked links",
                campaign.id
            );
        }
    }

    /// The example project seen through symbolic links, with `own` files (paths under the
    /// project) written in place of or beside the example's.
    fn example_with(own: &[(&str, &str)]) -> tempfile::TempDir {
        fn mirror(from: &Path, to: &Path, own: &[(std::path::PathBuf, &str)]) {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let target = to.join(entry.file_name());
                if entry.file_type().unwrap().is_dir() {
                    mirror(&entry.path(), &target, own);
                } else if !own.iter().any(|(p, _)| *p == target) {
                    std::os::unix::fs::symlink(entry.path(), &target).unwrap();
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        let own: Vec<_> = own.iter().map(|(p, s)| (dir.path().join(p), *s)).collect();
        std::os::unix::fs::symlink(
            root.join("campaigns.toml"),
            dir.path().join("campaigns.toml"),
        )
        .unwrap();
        std::os::unix::fs::symlink(root.join("segments"), dir.path().join("segments")).unwrap();
        mirror(&root.join("templates"), &dir.path().join("templates"), &own);
        for (path, src) in &own {
            std::fs::write(path, src).unwrap();
        }
        dir
    }

    /// A sample reader of the newsletter who gets the training section.
    fn training_reader<'a>(
        site: &crate::site::Site,
        samples: &'a [crate::site::Sample],
    ) -> Personal<'a> {
        let campaign = site.campaign("newsletter").unwrap();
        samples
            .iter()
            .map(|s| {
                site.personalise(
                    campaign,
                    &s.profile,
                    &s.facts,
                    links(1, 1),
                    1_800_000_000,
                    &[],
                )
            })
            .find(|p| p.sections.iter().any(|x| x.template == "sections/training"))
            .expect("a sample gets the training section")
    }

    #[test]
    fn a_text_template_gets_the_tracked_links_of_the_html() {
        // The example project with one more template of its own.
        let dir = example_with(&[(
            "templates/newsletter.txt.hbs",
            "Hello {{name}}. Courses: https://learn.contoso.example/courses/invoicing\n",
        )]);
        let site = crate::site::Site::load(dir.path()).unwrap();
        assert!(site.templates.links.is_some(), "links prepared at load");
        let campaign = site.campaign("newsletter").unwrap();
        let (samples, _) = crate::site::sample_profiles(&site);
        let person = training_reader(&site, &samples);
        let mut seam = Numbered(Vec::new());
        let r = site
            .templates
            .render_campaign(campaign, &site.project.sender, &person, &mut seam)
            .unwrap();
        let n = seam
            .0
            .iter()
            .position(|(url, _)| url == "https://learn.contoso.example/courses/invoicing")
            .expect("the course link is tracked")
            + 1;
        let tracked = format!("https://t.example/c/{n}?a=1&b=\"2\"");
        assert!(r.text.starts_with("Hello "), "{}", r.text);
        assert!(
            r.text.contains(&format!("Courses: {tracked}")),
            "{}",
            r.text
        );
        assert!(!r.text.contains("learn.contoso.example"), "{}", r.text);
        assert!(
            r.text.contains("Unsubscribe"),
            "the footer follows: {}",
            r.text
        );
    }

    #[test]
    fn a_section_s_untagged_links_carry_its_name() {
        // The marketer forgot the tag.
        let dir = example_with(&[(
            "templates/sections/training.hbs",
            "<p><a href=\"https://learn.contoso.example/courses/invoicing\">Take the course</a></p>",
        )]);
        let site = crate::site::Site::load(dir.path()).unwrap();
        let campaign = site.campaign("newsletter").unwrap();
        let (samples, _) = crate::site::sample_profiles(&site);
        let person = training_reader(&site, &samples);
        let mut seam = KeepLinks::default();
        let r = site
            .templates
            .render_campaign(campaign, &site.project.sender, &person, &mut seam)
            .unwrap();
        assert!(
            seam.links.contains(&(
                "https://learn.contoso.example/courses/invoicing".to_string(),
                Some("training".to_string())
            )),
            "{:?}",
            seam.links
        );
        assert!(!r.html.contains("data-tag"), "tags never reach the message");
    }

    #[test]
    fn people_with_the_same_sections_share_a_shape() {
        let site = crate::site::Site::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        let campaign = site.campaign("newsletter").unwrap();
        let (samples, _) = crate::site::sample_profiles(&site);
        let render = |id: i64, name: &str, email: &str| {
            let mut profile = samples[0].profile.clone();
            profile.id = id;
            profile.answers.name = Some(name.into());
            profile.email = crate::profile::Email::parse(email).unwrap();
            let person = site.personalise(
                campaign,
                &profile,
                &samples[0].facts,
                links(id, id),
                1_800_000_000,
                &[],
            );
            site.templates
                .render_campaign(
                    campaign,
                    &site.project.sender,
                    &person,
                    &mut Numbered(Vec::new()),
                )
                .unwrap()
        };
        render(1, "Ann Lee", "ann@example.com");
        let shapes = site.templates.shapes.len();
        let bob = render(2, "Bob Ray", "bob@example.com");
        assert_eq!(site.templates.shapes.len(), shapes, "one shape for both");
        assert!(bob.text.contains("Hello Bob,"), "{}", bob.text);
        assert!(bob.text.contains("bob@example.com") && !bob.text.contains("Ann"));
        assert!(bob.text.contains("https://news.example/unsubscribe/"));
        assert_eq!(bob.text, html_to_text(&bob.html));
    }

    #[test]
    fn upper_and_lower_escape_what_they_write() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(
            dir.path().join("templates/shout.hbs"),
            "{{upper name}}|{{lower name}}",
        )
        .unwrap();
        let t = Templates::load(dir.path(), true).unwrap();
        let out = t
            .render("shout", &serde_json::json!({"name": "<b>Ann</b> & Co"}))
            .unwrap();
        assert_eq!(
            out,
            "&lt;B&gt;ANN&lt;/B&gt; &amp; CO|&lt;b&gt;ann&lt;/b&gt; &amp; co"
        );
    }

    #[test]
    fn names_follow_paths() {
        let root = Path::new("/p/templates");
        assert_eq!(
            template_name(root, Path::new("/p/templates/partials/footer.hbs")).unwrap(),
            "footer"
        );
        assert_eq!(
            template_name(root, Path::new("/p/templates/sections/training.hbs")).unwrap(),
            "sections/training"
        );
        assert_eq!(
            template_name(root, Path::new("/p/templates/welcome.txt.hbs")).unwrap(),
            "welcome.txt"
        );
    }

    #[test]
    fn overrides_and_locates_syntax_errors() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("templates");
        std::fs::create_dir_all(t.join("pages")).unwrap();
        std::fs::write(t.join("pages/message.hbs"), "custom {{heading}}").unwrap();
        let tpl = Templates::load(dir.path(), true).unwrap();
        assert_eq!(
            tpl.render("pages/message", &serde_json::json!({"heading": "hi"}))
                .unwrap(),
            "custom hi"
        );
        assert!(
            tpl.render("pages/message", &serde_json::json!({})).is_err(),
            "strict mode"
        );

        // A block never closed is named where it opens.
        let never_closed = [
            (
                "line one\n  {{#if x}}never closed",
                (2, 3),
                "{{#if x}}",
                "{{/if}}",
            ),
            (
                "{{#each items}}{{#if a}}{{/if}}\n{{~#> layout }}",
                (1, 1),
                "{{#each items}}",
                "{{/each}}",
            ),
            (
                "{{#*inline \"x\"}}y",
                (1, 1),
                "{{#*inline \"x\"}}",
                "{{/inline}}",
            ),
        ];
        for (src, (line, col), opener, closer) in never_closed {
            std::fs::write(t.join("broken.hbs"), src).unwrap();
            let errs = Templates::load(dir.path(), true).unwrap_err();
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(errs[0].file.ends_with("broken.hbs"));
            assert_eq!((errs[0].line, errs[0].col), (line, col), "{src}");
            assert_eq!(
                errs[0].message,
                format!("template syntax error: {opener} is never closed; close it with {closer}")
            );
        }
        // Other mistakes keep Handlebars' own words and place.
        std::fs::write(t.join("broken.hbs"), "{{#if x}}a{{/each}}").unwrap();
        let errs = Templates::load(dir.path(), true).unwrap_err();
        assert!(
            errs[0].message.starts_with("template syntax error: ")
                && !errs[0].message.contains("never closed"),
            "{errs:?}"
        );
    }
}
