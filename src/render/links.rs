//! Finding the links of campaign messages that go through the tracking seam: once, when
//! the templates load, where the templates allow it; otherwise in every rendered message.
//!
//! Every `http(s)` link of a campaign message goes through the tracking seam
//! (`campaign::LinkSeam`). Finding them means parsing the rendered HTML, a sixth of the
//! CPU a send spends rendering. When every link of the email templates is written out in
//! the template (no `{{…}}` in its `href`, its `data-tag` or its attribute names) and no
//! template writes raw HTML from data (`{{{…}}}` other than the layout's `{{{body}}}`),
//! the links are found here: each `href` becomes a marker that Handlebars copies through,
//! and a send only swaps the markers for the seam's URLs ([`PreparedLinks::fill`]). The
//! result is the same, byte for byte, as parsing at send time (a test keeps it so); any
//! template that does not qualify keeps the parse at send time for every message.

use lol_html::html_content::Element;
use lol_html::{RewriteStrSettings, element, rewrite_str};

use super::campaign::LinkSeam;

/// Starts a marker; never in a template's own text, and never written by rendering
/// (marker bytes are only what `prepare` put in, followed by this process's nonce).
const MARK: char = '\u{1}';

/// A link only the render knows, as (URL, tag): see [`PreparedLinks::slot_marker`].
pub type Slot<'a> = (&'a str, Option<&'a str>);

/// Marker numbers from here on name a render's slots (slot `k` is `SLOT_BASE + k`), not
/// the links found at load.
const SLOT_BASE: usize = 1 << 32;

/// The `href`s that are ours to fill: each is a slot of the render (see
/// [`PreparedLinks::slot_marker`]) when links are prepared.
pub const SLOT_VARIABLES: &[&str] = &["{{keep_url}}", "{{url}}", "{{this.url}}"];

/// Raw outputs that are ours: a library item's summary, its links prepared at load.
const SUMMARY_VARIABLES: &[&str] = &["{{{summary}}}", "{{{this.summary}}}"];

/// The links of the email templates, found at load time, and the markers standing in for
/// them in the registered templates.
#[derive(Debug)]
pub struct PreparedLinks {
    /// Random per load, so that no recipient's data can spell a marker.
    nonce: String,
    /// Marker number → (URL, `data-tag`).
    links: Vec<(String, Option<String>)>,
    /// The first [`SLOT_MARKERS_MADE`] slot markers, made once: every message of a campaign
    /// with a library looks one up per item, and formatting each cost more than the rest of
    /// what the library's values cost when they are lent (see `Item::lend_values`).
    slot_markers: Vec<String>,
}

/// Slot markers made at load: the keep link and 31 library items (more are formatted when
/// asked for).
const SLOT_MARKERS_MADE: usize = 32;

/// The marker of slot `k` under `nonce`.
fn format_slot_marker(nonce: &str, k: usize) -> String {
    format!("{MARK}{nonce}:{}{MARK}", SLOT_BASE + k)
}

/// What link tracking takes from an `<a href>`, the same at load time and at send time:
/// the decoded URL and `data-tag` of a link to track, or `None` for one left as it is
/// (`data-untracked`, or not http(s)). `data-untracked` and `data-tag` are removed.
fn take_anchor(el: &mut Element<'_, '_>) -> Option<(String, Option<String>)> {
    if el.has_attribute("data-untracked") {
        el.remove_attribute("data-untracked");
        return None;
    }
    let tag = el
        .get_attribute("data-tag")
        .map(|t| html_escape::decode_html_entities(&t).into_owned())
        .filter(|t| !t.is_empty());
    el.remove_attribute("data-tag");
    let url = html_escape::decode_html_entities(el.get_attribute("href")?.trim()).into_owned();
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then_some((url, tag))
}

/// Load time: an anchor's link (see [`take_anchor`]) replaced by the marker of its number
/// (`before` links were found before this piece), and added to `links`.
fn mark(
    el: &mut Element<'_, '_>,
    nonce: &str,
    before: usize,
    links: &mut Vec<(String, Option<String>)>,
) -> lol_html::HandlerResult {
    let Some((url, tag)) = take_anchor(el) else {
        return Ok(());
    };
    let marker = format!("{MARK}{nonce}:{}{MARK}", before + links.len());
    links.push((url, tag));
    el.set_attribute("href", &marker)?;
    Ok(())
}

/// Send time: passes every `http(s)` link of rendered `html` through `seam`; records
/// (original, new) pairs. For templates whose links could not be prepared at load.
pub(super) fn rewrite_links(
    html: &str,
    seam: &mut dyn LinkSeam,
    replaced: &mut Vec<(String, String)>,
) -> Result<String, String> {
    let settings =
        RewriteStrSettings::new().append_element_content_handler(element!("a[href]", |el| {
            let Some((url, tag)) = take_anchor(el) else {
                return Ok(());
            };
            let new = seam.track(&url, tag.as_deref());
            el.set_attribute("href", &html_escape::encode_double_quoted_attribute(&new))?;
            replaced.push((url, new));
            Ok(())
        }));
    rewrite_str(html, settings).map_err(|e| format!("cannot rewrite links: {e}"))
}

impl Default for PreparedLinks {
    fn default() -> Self {
        let nonce = format!("{:016x}", rand::random::<u64>());
        PreparedLinks {
            slot_markers: (0..SLOT_MARKERS_MADE)
                .map(|k| format_slot_marker(&nonce, k))
                .collect(),
            nonce,
            links: Vec::new(),
        }
    }
}

impl PreparedLinks {
    /// The template source with its links replaced by markers, or `None` when a link (or
    /// raw output) depends on data, so the links must be found at send time.
    /// `allow_raw_body` admits the layout's `{{{body}}}`, whose HTML is itself prepared.
    ///
    /// Two kinds of data are ours, not the marketer's, and admitted: an `href` that is only
    /// one of [`SLOT_VARIABLES`] (at send time the value is a slot marker, see
    /// [`PreparedLinks::slot_marker`]), and a library item's `{{{summary}}}`, whose links are
    /// prepared when the library loads ([`PreparedLinks::prepare_fragment`]).
    pub fn prepare(&mut self, src: &str, allow_raw_body: bool) -> Option<String> {
        let raw_outputs = src.matches("{{{").count() + src.matches("{{&").count();
        let body_slots = if allow_raw_body {
            src.matches("{{{body}}}").count()
        } else {
            0
        } + SUMMARY_VARIABLES
            .iter()
            .map(|v| src.matches(v).count())
            .sum::<usize>();
        if src.contains(MARK) || raw_outputs > body_slots {
            return None;
        }
        // Some link is written by Handlebars: only the rendered HTML can tell.
        let mut dynamic = false;
        let mut links = Vec::new();
        let settings =
            RewriteStrSettings::new().append_element_content_handler(element!("a[href]", |el| {
                if el
                    .attributes()
                    .iter()
                    .any(|a| a.name().contains(['{', '}']))
                {
                    dynamic = true;
                    return Ok(());
                }
                let written_by_data =
                    |name: &str| el.get_attribute(name).is_some_and(|v| v.contains("{{"));
                let slot = el
                    .get_attribute("href")
                    .is_some_and(|h| SLOT_VARIABLES.contains(&h.trim()));
                if slot && !el.has_attribute("data-untracked") && !written_by_data("data-tag") {
                    // Rendered, the href is a slot marker; the slot carries its own tag.
                    el.remove_attribute("data-tag");
                    return Ok(());
                }
                if !el.has_attribute("data-untracked")
                    && (written_by_data("href") || written_by_data("data-tag"))
                {
                    dynamic = true;
                    return Ok(());
                }
                // Not http(s), or `data-untracked`: left alone, as at send time.
                mark(el, &self.nonce, self.links.len(), &mut links)
            }));
        let out = rewrite_str(src, settings).ok()?;
        if dynamic {
            return None;
        }
        self.links.extend(links);
        Some(out)
    }

    /// A fragment of finished HTML (a library item's summary) with its links replaced by
    /// markers, as [`PreparedLinks::prepare`] does for templates; nothing in it is data.
    /// `None` when it cannot be parsed or holds a marker character.
    pub fn prepare_fragment(&mut self, html: &str) -> Option<String> {
        if html.contains(MARK) {
            return None;
        }
        let mut links = Vec::new();
        let settings = RewriteStrSettings::new()
            .append_element_content_handler(element!("a[href]", |el| {
                mark(el, &self.nonce, self.links.len(), &mut links)
            }));
        let out = rewrite_str(html, settings).ok()?;
        self.links.extend(links);
        Some(out)
    }

    /// The marker that stands for slot `k` of a render: a link whose URL and tag only the
    /// render knows (a person's keep link, their library items; see `campaign::slots`).
    pub fn slot_marker(&self, k: usize) -> std::borrow::Cow<'_, str> {
        match self.slot_markers.get(k) {
            Some(marker) => marker.into(),
            None => format_slot_marker(&self.nonce, k).into(),
        }
    }

    /// `html` with every marker replaced by what `seam` makes of its link (attribute-encoded,
    /// as the send-time rewrite writes it); records (marker number, new URL) in order in
    /// `tracked`, for [`PreparedLinks::fill_text`] and [`PreparedLinks::url`].
    /// `slots` are the render's own links (see [`PreparedLinks::slot_marker`]).
    pub fn fill(
        &self,
        html: &str,
        seam: &mut dyn LinkSeam,
        tracked: &mut Vec<(usize, String)>,
        slots: &[Slot<'_>],
    ) -> Result<String, String> {
        self.swap_markers(html, |n, out| {
            let (url, tag) = self
                .link(n, slots)
                .ok_or_else(|| format!("unknown link marker {n}"))?;
            let new = seam.track(url, tag);
            out.push_str(&html_escape::encode_double_quoted_attribute(&new));
            tracked.push((n, new));
            Ok(())
        })
    }

    /// The URL the template wrote for marker `n` (as [`PreparedLinks::fill`] recorded it).
    pub fn url<'a>(&'a self, n: usize, slots: &[Slot<'a>]) -> &'a str {
        self.link(n, slots).map_or("", |(url, _)| url)
    }

    /// A text template's output with each slot marker (its `{{url}}`, `{{keep_url}}`)
    /// replaced by the URL the HTML gave that slot (`tracked`), or the slot's own URL.
    pub fn fill_slots(
        &self,
        text: &str,
        tracked: &[(usize, String)],
        slots: &[Slot<'_>],
    ) -> String {
        self.swap_markers(text, |n, out| {
            match tracked.iter().find(|(m, _)| *m == n) {
                Some((_, new)) => out.push_str(new),
                None => out.push_str(self.url(n, slots)),
            }
            Ok::<(), ()>(())
        })
        .unwrap_or_else(|()| text.to_string())
    }

    /// The link of marker `n`: found at load, or slot `n - SLOT_BASE` of the render.
    fn link<'a>(&'a self, n: usize, slots: &[Slot<'a>]) -> Option<Slot<'a>> {
        match n.checked_sub(SLOT_BASE) {
            Some(k) => slots.get(k).copied(),
            None => self
                .links
                .get(n)
                .map(|(url, tag)| (url.as_str(), tag.as_deref())),
        }
    }

    /// The text of a message's shape (see `shape`) with its markers replaced by the URLs
    /// [`PreparedLinks::fill`] gave them in its HTML (the text holds the same links in the
    /// same order, less any the text leaves out). `None` where a link's text equals its URL
    /// (the HTML's own text holds the URL alone) or a marker has no URL.
    pub fn fill_text(&self, text: &str, tracked: &[(usize, String)]) -> Option<String> {
        let mut next = 0;
        self.swap_markers(text, |n, out| {
            let at = tracked[next..]
                .iter()
                .position(|(m, _)| *m == n)
                .ok_or(())?;
            let url = &tracked[next + at].1;
            next += at + 1;
            if super::shape::link_text_equals(out, url) {
                return Err(());
            }
            out.push_str(url);
            Ok(())
        })
        .ok()
    }

    /// `s` with each of this load's markers replaced by what `with` writes for its number;
    /// a marker character that starts none (it came from data) is copied through as text.
    fn swap_markers<E>(
        &self,
        s: &str,
        mut with: impl FnMut(usize, &mut String) -> Result<(), E>,
    ) -> Result<String, E> {
        let mut out = String::with_capacity(s.len() + 64 * self.links.len());
        let mut rest = s;
        while let Some(at) = rest.find(MARK) {
            out.push_str(&rest[..at]);
            let after = &rest[at + MARK.len_utf8()..];
            let number = after
                .strip_prefix(self.nonce.as_str())
                .and_then(|a| a.strip_prefix(':'))
                .and_then(|a| a.split_once(MARK))
                .and_then(|(n, tail)| Some((n.parse::<usize>().ok()?, tail)));
            let Some((n, tail)) = number else {
                out.push(MARK);
                rest = after;
                continue;
            };
            with(n, &mut out)?;
            rest = tail;
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::KeepLinks;

    #[test]
    fn slot_markers_made_at_load_are_the_ones_formatted_later() {
        let p = PreparedLinks::default();
        for k in [
            0,
            1,
            SLOT_MARKERS_MADE - 1,
            SLOT_MARKERS_MADE,
            SLOT_MARKERS_MADE + 5,
        ] {
            assert_eq!(
                p.slot_marker(k),
                format_slot_marker(&p.nonce, k),
                "slot {k}"
            );
        }
        let all: std::collections::HashSet<String> = (0..SLOT_MARKERS_MADE + 2)
            .map(|k| p.slot_marker(k).into_owned())
            .collect();
        assert_eq!(
            all.len(),
            SLOT_MARKERS_MADE + 2,
            "every slot has a marker of its own"
        );
    }

    #[test]
    fn static_links_become_markers_and_come_back() {
        let mut p = PreparedLinks::default();
        let src = r#"<p><a href="https://a.example/x?y=1&amp;z=2" data-tag="t">A</a>
<a href="mailto:x@y.example">M</a> <a href="{{profile_url}}" data-untracked="true">P</a>
{{#each items}}<a href="http://b.example/">{{this}}</a>{{/each}}</p>"#;
        let prepared = p.prepare(src, false).expect("every link is static");
        assert!(!prepared.contains("a.example"), "{prepared}");
        assert!(!prepared.contains("data-tag") && !prepared.contains("data-untracked"));
        // As Handlebars would render it: the each-block twice.
        let rendered = prepared
            .replace("{{profile_url}}", "https://news.example/profile/T")
            .replace("{{#each items}}", "")
            .replace("{{/each}}", "")
            .replace("{{this}}", "one");
        let mut seam = KeepLinks::default();
        let mut tracked = Vec::new();
        let out = p.fill(&rendered, &mut seam, &mut tracked, &[]).unwrap();
        assert!(
            out.contains(r#"href="https://a.example/x?y=1&amp;z=2""#),
            "{out}"
        );
        assert_eq!(
            seam.links,
            vec![
                (
                    "https://a.example/x?y=1&z=2".to_string(),
                    Some("t".to_string())
                ),
                ("http://b.example/".to_string(), None),
            ]
        );
        // What a text template's links are swapped with: each marker's own URL, the new one.
        let pairs: Vec<(&str, &str)> = tracked
            .iter()
            .map(|(n, new)| (p.url(*n, &[]), new.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("https://a.example/x?y=1&z=2", "https://a.example/x?y=1&z=2"),
                ("http://b.example/", "http://b.example/"),
            ]
        );
    }

    #[test]
    fn links_written_by_data_are_left_to_send_time() {
        for src in [
            r#"<a href="{{link}}">x</a>"#,
            r#"<a href="https://a.example/{{path}}">x</a>"#,
            r#"<a href="https://a.example/" data-tag="{{tag}}">x</a>"#,
            r#"<a {{#if x}}data-untracked{{/if}} href="https://a.example/">x</a>"#,
            r#"<p>{{{html}}}</p>"#,
            r#"<p>{{&html}}</p>"#,
        ] {
            assert!(
                PreparedLinks::default().prepare(src, false).is_none(),
                "{src}"
            );
        }
        assert!(
            PreparedLinks::default()
                .prepare("<body>{{{body}}}</body>", true)
                .is_some()
        );
    }

    #[test]
    fn text_links_are_filled_in_order_unless_a_link_reads_as_its_url() {
        let mut p = PreparedLinks::default();
        let src =
            r#"<p><a href="https://a.example/">A</a> and <a href="https://b.example/">B</a></p>"#;
        let prepared = p.prepare(src, false).unwrap();
        let mut tracked = Vec::new();
        let html = p
            .fill(&prepared, &mut KeepLinks::default(), &mut tracked, &[])
            .unwrap();
        let text = p
            .fill_text(&nanohtml2text::html2text(&prepared), &tracked)
            .unwrap();
        assert_eq!(text, nanohtml2text::html2text(&html));
        // A link whose text is its own URL: the HTML's text has the URL once, so the shape's
        // text (marker in parentheses) is refused.
        let src = r#"<p><a href="https://a.example/">https://a.example/</a></p>"#;
        let prepared = p.prepare(src, false).unwrap();
        let mut tracked = Vec::new();
        p.fill(&prepared, &mut KeepLinks::default(), &mut tracked, &[])
            .unwrap();
        assert_eq!(
            p.fill_text(&nanohtml2text::html2text(&prepared), &tracked),
            None
        );
    }

    #[test]
    fn a_marker_spelled_by_data_is_not_a_link() {
        let mut p = PreparedLinks::default();
        let prepared = p
            .prepare(r#"<a href="https://a.example/">x</a>"#, false)
            .unwrap();
        let forged = format!("{MARK}0000000000000000:0{MARK}");
        let rendered = format!("{prepared}{forged}");
        let mut seam = KeepLinks::default();
        let out = p.fill(&rendered, &mut seam, &mut Vec::new(), &[]).unwrap();
        assert!(out.ends_with(&forged), "{out}");
        assert_eq!(seam.links.len(), 1, "only the template's own link");
    }
}

/// A section template's links without a `data-tag`, tagged with `tag` (the section's name),
/// so that its clicks are told apart in the links export even where the marketer wrote no
/// tag; `None` when every link already has one. Only `<a` start tags outside `{{…}}` are
/// looked at; the rest of the source is left byte for byte.
pub fn tag_untagged(src: &str, tag: &str) -> Option<String> {
    let b = src.as_bytes();
    let mut inserts = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"{{") {
            i = src[i..].find("}}").map_or(b.len(), |e| i + e + 2);
            continue;
        }
        let is_a = b[i] == b'<'
            && b.get(i + 1).is_some_and(|c| c.eq_ignore_ascii_case(&b'a'))
            && b.get(i + 2)
                .is_some_and(|c| c.is_ascii_whitespace() || *c == b'>');
        if !is_a {
            i += 1;
            continue;
        }
        // The end of the start tag: the first `>` outside quotes and mustaches.
        let (mut j, mut quote) = (i + 2, None);
        while j < b.len() {
            match (quote, b[j]) {
                (None, b'"' | b'\'') => quote = Some(b[j]),
                (Some(q), c) if c == q => quote = None,
                (None, b'{') if b[j..].starts_with(b"{{") => {
                    j = src[j..].find("}}").map_or(b.len(), |e| j + e + 1);
                }
                (None, b'>') => break,
                _ => {}
            }
            j += 1;
        }
        if !src[i..j.min(b.len())]
            .to_ascii_lowercase()
            .contains("data-tag")
        {
            inserts.push(i + 2);
        }
        i = j;
    }
    if inserts.is_empty() {
        return None;
    }
    let attr = format!(
        " data-tag=\"{}\"",
        html_escape::encode_double_quoted_attribute(tag)
    );
    let mut out = String::with_capacity(src.len() + inserts.len() * attr.len());
    let mut last = 0;
    for at in inserts {
        out.push_str(&src[last..at]);
        out.push_str(&attr);
        last = at;
    }
    out.push_str(&src[last..]);
    Some(out)
}

#[cfg(test)]
mod tag_tests {
    use super::tag_untagged;

    #[test]
    fn untagged_links_of_a_section_get_its_name() {
        let src = r#"<p><a href="https://a.example/">A</a> <A HREF='x'>B</A> <a href="y" data-tag="own">C</a>
<abbr>no</abbr> <a
 href="{{url}}" title="{{#if x}}>{{/if}}">D</a> {{! <a href="in a comment"> }}</p>"#;
        let out = tag_untagged(src, "training").unwrap();
        assert_eq!(
            out,
            r#"<p><a data-tag="training" href="https://a.example/">A</a> <A data-tag="training" HREF='x'>B</A> <a href="y" data-tag="own">C</a>
<abbr>no</abbr> <a data-tag="training"
 href="{{url}}" title="{{#if x}}>{{/if}}">D</a> {{! <a href="in a comment"> }}</p>"#
        );
        assert_eq!(tag_untagged(r#"<a href="y" data-tag="t">t</a>"#, "s"), None);
        assert_eq!(tag_untagged("no links {{x}}", "s"), None);
        // Never panics on a cut-off tag or mustache.
        for cut in ["<a", "<a href=\"x", "{{#if", "<a {{x"] {
            let _ = tag_untagged(cut, "s");
        }
    }
}
