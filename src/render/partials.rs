//! The email layout's partials written into it at load.
//!
//! Handlebars renders `{{> footer}}` by first copying the whole context it is given (its
//! `merge_json`, even with no arguments to merge) and dropping the copy afterwards. In the
//! email layout that context is everything a message knows: the rendered body, the
//! profile, the sections, the library items. The copy was about a tenth of a campaign
//! message's render (BENCHMARKS.md, "The library inside a sending run").
//!
//! A partial written at the top level of the layout, by name, with no arguments, no block
//! and no indentation, renders exactly as its own elements put in its place would: the same
//! data (the copy is of the layout's own context), no enclosing block whose parameters or
//! `@` variables it could lose, and nothing to indent. So its elements are put there, as long
//! as the partial itself includes no partial and defines none, and looks nowhere outside
//! its context (`../`). Anything else stays a partial, as Handlebars renders it.

use handlebars::Handlebars;
use handlebars::template::{Parameter, Template, TemplateElement};

/// The template whose partials are written in.
const LAYOUT: &str = "email-layout";

/// Writes the simple partials of the email layout into it (see the module); `source` gives
/// a template's source as registered.
pub(super) fn inline_into_layout<'a>(
    hbs: &mut Handlebars<'static>,
    source: impl Fn(&str) -> Option<&'a str>,
) {
    let Some(layout) = hbs.get_template(LAYOUT) else {
        return;
    };
    let mut elements = Vec::with_capacity(layout.elements.len());
    let mut mapping = Vec::with_capacity(layout.mapping.len());
    let mut changed = false;
    for (i, element) in layout.elements.iter().enumerate() {
        let inlined = simple_partial(element)
            .filter(|name| source(name).is_some_and(self_contained))
            .and_then(|name| hbs.get_template(name));
        match inlined {
            Some(partial) => {
                elements.extend(partial.elements.iter().cloned());
                // Positions name the partial's own lines (an error inside it says so).
                mapping.extend(partial.mapping.iter().cloned());
                changed = true;
            }
            None => {
                elements.push(element.clone());
                mapping.extend(layout.mapping.get(i).cloned());
            }
        }
    }
    if changed {
        let mut template = Template::new();
        template.name = layout.name.clone();
        template.elements = elements;
        template.mapping = mapping;
        hbs.register_template(LAYOUT, template);
    }
}

/// The name of a partial included by name with no arguments, block or indentation.
fn simple_partial(element: &TemplateElement) -> Option<&str> {
    let TemplateElement::PartialExpression(d) = element else {
        return None;
    };
    match &d.name {
        Parameter::Name(name)
            if d.params.is_empty()
                && d.hash.is_empty()
                && d.template.is_none()
                && d.indent.as_deref().is_none_or(str::is_empty) =>
        {
            Some(name)
        }
        _ => None,
    }
}

/// Whether a partial's source includes or defines no partial (`{{>`, `{{#>`, `{{*`,
/// `{{#*`, with or without `~`), uses no `@partial-block` and reaches no enclosing context
/// (`../`).
fn self_contained(src: &str) -> bool {
    if src.contains("../") || src.contains("@partial-block") {
        return false;
    }
    src.match_indices("{{").all(|(at, _)| {
        let tag = src[at + 2..].trim_start_matches(['{', '~', '#', ' ', '\t', '\r', '\n']);
        !tag.starts_with(['>', '*'])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The layout rendered with `partials` as Handlebars renders them, and with them
    /// written in; whether the layout was left as it was.
    fn both(layout: &str, partials: &[(&str, &str)]) -> (String, String, bool) {
        let mut hbs = Handlebars::new();
        hbs.register_template_string(LAYOUT, layout).unwrap();
        for (name, src) in partials {
            hbs.register_template_string(name, src).unwrap();
        }
        let data = json!({
            "subject": "Hi <you>", "body": "<p>Body</p>\n", "email": "ann@shop.example",
            "sender": {"name": "Contoso", "postal_address": "1 Main St"},
            "items": [{"t": "a"}, {"t": "b"}], "yes": true,
        });
        let before = hbs.render(LAYOUT, &data).unwrap();
        let mut inlined = hbs.clone();
        inline_into_layout(&mut inlined, |name| {
            partials.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
        });
        let after = inlined.render(LAYOUT, &data).unwrap();
        let unchanged = inlined.get_template(LAYOUT) == hbs.get_template(LAYOUT);
        (before, after, unchanged)
    }

    #[test]
    fn the_shipped_layout_renders_the_same_with_its_footer_written_in() {
        let (before, after, unchanged) = both(
            include_str!("../../templates/partials/email-layout.hbs"),
            &[(
                "footer",
                include_str!("../../templates/partials/footer.hbs"),
            )],
        );
        assert!(!unchanged, "the footer is written in");
        assert_eq!(before, after);
        assert!(after.contains("1 Main St"));
    }

    #[test]
    fn standalone_lines_blocks_and_values_render_the_same() {
        let footer = "<p>{{email}}</p>\n{{#if yes}}\n  <b>{{sender.name}}</b>\n{{/if}}\n{{#each items}}{{@index}}:{{t}} {{/each}}\n{{{body}}}";
        for layout in [
            "<div>\n{{> footer}}\n</div>\n",
            "<div>{{> footer}}</div>",
            "{{> footer}}",
            "a\n\n{{> footer}}\n\nb {{subject}}\n",
            "<div>\n{{~> footer~}}\n</div>",
        ] {
            let (before, after, unchanged) = both(layout, &[("footer", footer)]);
            assert!(!unchanged, "{layout:?}");
            assert_eq!(before, after, "{layout:?}");
        }
    }

    #[test]
    fn partials_that_are_not_simple_stay_partials() {
        for (layout, footer) in [
            ("<div>\n  {{> footer}}\n</div>", "<p>a</p>\n<p>b</p>\n"),
            ("{{> footer email}}", "<p>{{this}}</p>"),
            ("{{> footer x=1}}", "<p>{{x}}</p>"),
            ("{{#each items}}{{> footer}}{{/each}}", "<p>{{t}}</p>"),
            ("{{> footer}}", "<p>{{../subject}}</p>"),
            ("{{> footer}}", "<p>{{> inner}}</p>"),
            ("{{> footer}}", "{{#*inline \"x\"}}y{{/inline}}{{> x}}"),
        ] {
            let (before, after, unchanged) =
                both(layout, &[("footer", footer), ("inner", "<i>{{email}}</i>")]);
            assert!(unchanged, "{layout:?} with {footer:?}");
            assert_eq!(before, after, "{layout:?} with {footer:?}");
        }
    }
}
