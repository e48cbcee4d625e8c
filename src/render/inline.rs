//! CSS inlining. Mail clients that drop `<style>` still honour `style="..."`, so the rules
//! of the email layout's `<style>` block are copied onto the elements with css-inline.
//!
//! Doing that for every recipient costs more than the rest of a render together, and its
//! result depends only on the markup, not on the person. So it is done once, when the
//! templates are loaded: each email template's Handlebars expressions are set aside, the
//! markup is inlined as a fragment against the layout's CSS, and the expressions are put
//! back. That is only kept when it is lossless: the fragment must come back from the HTML
//! parser unchanged apart from the added `style` attributes (no fixed-up tags, no moved
//! text, as would happen with `{{#each}}` between table rows). Any template that is not
//! lossless makes every render inline at send time instead, over the whole document.
//! The `<style>` block stays in the head either way, for clients that read it.

/// Placeholder delimiters: private-use characters that no template contains.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// Replaces every `{{...}}` / `{{{...}}}` with a numbered placeholder; `None` when a
/// placeholder character already occurs or an expression is not closed.
fn protect(source: &str) -> Option<(String, Vec<&str>)> {
    if source.contains(OPEN) || source.contains(CLOSE) {
        return None;
    }
    let mut out = String::with_capacity(source.len());
    let mut exprs = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let closing = if after.starts_with("{{{") {
            "}}}"
        } else {
            "}}"
        };
        let end = after.find(closing)? + closing.len();
        out.push(OPEN);
        out.push_str(&exprs.len().to_string());
        out.push(CLOSE);
        exprs.push(&after[..end]);
        rest = &after[end..];
    }
    out.push_str(rest);
    Some((out, exprs))
}

fn restore(protected: &str, exprs: &[&str]) -> Option<String> {
    let mut out =
        String::with_capacity(protected.len() + exprs.iter().map(|e| e.len()).sum::<usize>());
    let mut rest = protected;
    let mut used = 0;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        let end = after.find(CLOSE)?;
        let i: usize = after[..end].parse().ok()?;
        out.push_str(exprs.get(i)?);
        used += 1;
        rest = &after[end + CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    (used == exprs.len()).then_some(out)
}

fn inliner(css: Option<&str>) -> css_inline::CSSInliner<'static> {
    css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .keep_style_tags(true)
        .keep_at_rules(true)
        .extra_css(css.map(|c| std::borrow::Cow::Owned(c.to_string())))
        .build()
}

/// Inlines `css` into a template fragment at load time; `None` when that would not be
/// lossless (see the module docs).
pub fn pre_inline(source: &str, css: &str) -> Option<String> {
    let (protected, exprs) = protect(source)?;
    let plain = inliner(None);
    // The parser must give the fragment back exactly as written.
    let unchanged = plain.inline_fragment(&protected, "").ok()?;
    if unchanged != protected {
        return None;
    }
    let inlined = plain.inline_fragment(&protected, css).ok()?;
    restore(&inlined, &exprs)
}

/// Inlines the whole rendered document at send time (the fallback).
pub fn inline_document(html: &str) -> Result<String, String> {
    inliner(None)
        .inline(html)
        .map_err(|e| format!("cannot inline CSS: {e}"))
}

/// The text of every `<style>` block of a document.
pub fn style_blocks(html: &str) -> String {
    let mut css = String::new();
    let mut rest = html;
    while let Some(open) = rest.find("<style") {
        let Some(gt) = rest[open..].find('>') else {
            break;
        };
        let body = &rest[open + gt + 1..];
        let Some(close) = body.find("</style>") else {
            break;
        };
        css.push_str(&body[..close]);
        css.push('\n');
        rest = &body[close..];
    }
    css
}

/// The part of a document between `<body ...>` and `</body>`, as (start, end) byte offsets.
pub fn body_range(html: &str) -> Option<(usize, usize)> {
    let open = html.find("<body")?;
    let start = open + html[open..].find('>')? + 1;
    let end = html.rfind("</body>")?;
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSS: &str = "p { margin: 0 } a { color: red } .note { color: blue }";

    #[test]
    fn inlines_around_handlebars() {
        let src = "<p>Hello {{#if first_name}}{{first_name}}{{else}}there{{/if}},</p>\n<p class=\"note\"><a href=\"{{url}}\" data-tag=\"x\">go</a></p>\n{{> footer}}";
        let out = pre_inline(src, CSS).expect("lossless");
        assert!(out.contains("<p style=\"margin: 0;\">Hello {{#if first_name}}{{first_name}}{{else}}there{{/if}},</p>"), "{out}");
        assert!(out.contains("href=\"{{url}}\""));
        assert!(out.contains("{{> footer}}"), "partial calls survive");
        assert!(out.contains("color: red"));
    }

    #[test]
    fn refuses_what_the_parser_would_rearrange() {
        let table = "<table>{{#each rows}}<tr><td>{{this}}</td></tr>{{/each}}</table>";
        assert_eq!(pre_inline(table, CSS), None);
        let unbalanced = "{{#if x}}<div class=\"a\">{{else}}<div>{{/if}}text</div>";
        assert_eq!(pre_inline(unbalanced, CSS), None);
    }

    #[test]
    fn finds_styles_and_body() {
        let doc = "<html><head><style>p{x:y}</style></head><body class=\"b\">hi</body></html>";
        assert_eq!(style_blocks(doc).trim(), "p{x:y}");
        let (s, e) = body_range(doc).unwrap();
        assert_eq!(&doc[s..e], "hi");
    }
}
