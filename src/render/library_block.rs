//! The library block (`{{#each library}}…{{/each}}`) written from each item's output, kept,
//! instead of rendered again for every message.
//!
//! A newsletter with a library renders the same few hundred items over and over: what the
//! block writes for an item depends only on the item's values (its title, summary, its
//! link's slot) when the block's body looks at nothing else. Handlebars spent about 10,000
//! instructions per item on it (a block context pushed, each path resolved from the root
//! with its segments copied, each value copied out and escaped), a sixth of what a library
//! adds to a message (BENCHMARKS.md, "The library inside a sending run").
//!
//! So at load, an `{{#each library}}` block whose body only reads the item's own values
//! (paths naming one of them, `{{#if}}`/`{{#unless}}` on them, text, comments; no helpers,
//! `@index`, `../` or partials) becomes a call of a helper of its own with the same
//! parameter and body. For each item of the list the helper looks up what the body wrote
//! for that item, keyed by the item's values, and on a miss renders the body as `each`
//! would. The output is the same as `each`'s (tests render both ways); blocks with
//! `{{else}}`, block parameters or anything else in their body stay `each`.
//!
//! Only templates rendered on their own are rewritten (a campaign's template: not a
//! partial, not a section, not included by name anywhere): Handlebars indents what a
//! partial included with indentation writes, line by line, and a helper cannot ask whether
//! it is inside one. A template reached through a partial named by data (`{{> (lookup …)}}`,
//! which rapport's templates use for sections) that is also a campaign's would have its
//! library block's lines left unindented there: only whitespace.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{
    BlockContext, Context, Handlebars, Helper, HelperDef, HelperResult, Output, PathSeg,
    RenderContext, RenderErrorReason, Renderable,
};
use serde_json::Value;

/// The names the helpers are registered under, with the block's number after it: not a
/// name a template can call (a path segment has no space), so only blocks made here reach
/// them. Each block has a helper of its own, so that what one body wrote for an item is
/// never taken for another's.
const HELPER: &str = "library block";

/// The helper name of block `n`.
fn helper_name(n: usize) -> String {
    format!("{HELPER} {n}")
}

/// Bytes of kept output at most; past it the kept output starts again (a library whose
/// items never repeat gains nothing from it and must not grow it without bound).
const MAX_KEPT_BYTES: usize = 8 << 20;

/// Replaces, in every template of `hbs` that `rewrite` names and no template includes by
/// name, the item-local `{{#each library}}` blocks with a helper each (see the module), and
/// registers them; returns how many blocks there are.
pub(super) fn prepare(hbs: &mut Handlebars<'static>, rewrite: impl Fn(&str) -> bool) -> usize {
    let mut included = std::collections::HashSet::new();
    for t in hbs.get_templates().values() {
        partials_named(t, &mut included);
    }
    let names: Vec<String> = hbs
        .get_templates()
        .keys()
        .filter(|n| rewrite(n) && !included.contains(n.as_str()))
        .cloned()
        .collect();
    let mut blocks = 0;
    for name in names {
        let Some(template) = hbs.get_template(&name) else {
            continue;
        };
        let mut template = template.clone();
        let before = blocks;
        rewrite_blocks(&mut template, &mut blocks);
        if blocks > before {
            hbs.register_template(&name, template);
        }
    }
    register(hbs, blocks);
    blocks
}

/// Registers the helpers of `blocks` blocks with nothing kept yet: a registry cloned from
/// one `prepare`d (the marking one) gets its own, as its escaping writes different output.
pub(super) fn register(hbs: &mut Handlebars<'static>, blocks: usize) {
    for n in 0..blocks {
        hbs.register_helper(&helper_name(n), Box::new(LibraryBlock::default()));
    }
}

/// The names of the partials `template` includes by name, in any block.
fn partials_named<'a>(template: &'a Template, names: &mut std::collections::HashSet<&'a str>) {
    for element in &template.elements {
        match element {
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                if let Parameter::Name(n) = &d.name {
                    names.insert(n);
                }
                if let Some(t) = &d.template {
                    partials_named(t, names);
                }
            }
            TemplateElement::HelperBlock(h) => {
                for t in [&h.template, &h.inverse].into_iter().flatten() {
                    partials_named(t, names);
                }
            }
            TemplateElement::DecoratorBlock(d) => {
                if let Some(t) = &d.template {
                    partials_named(t, names);
                }
            }
            _ => {}
        }
    }
}

/// Rewrites the blocks of `template` and those nested in its blocks, numbering them on
/// from `blocks`.
fn rewrite_blocks(template: &mut Template, blocks: &mut usize) {
    for element in &mut template.elements {
        if let TemplateElement::HelperBlock(block) = element {
            if is_library_block(block) {
                block.name = Parameter::Name(helper_name(*blocks));
                *blocks += 1;
                continue;
            }
            for inner in [&mut block.template, &mut block.inverse]
                .into_iter()
                .flatten()
            {
                rewrite_blocks(inner, blocks);
            }
        }
    }
}

/// `{{#each library}}` with no `{{else}}`, block parameters or hash, and an item-local body.
fn is_library_block(block: &HelperTemplate) -> bool {
    matches!(&block.name, Parameter::Name(n) if n == "each")
        && block.inverse.is_none()
        && block.block_param.is_none()
        && block.hash.is_empty()
        && matches!(block.params.as_slice(),
            [Parameter::Path(handlebars::Path::Relative((segs, _)))]
                if matches!(segs.as_slice(), [PathSeg::Named(n)] if n == "library"))
        && block.template.as_ref().is_some_and(item_local)
}

/// Whether a body reads nothing but the item's own values (see the module).
fn item_local(body: &Template) -> bool {
    body.elements.iter().all(|e| match e {
        TemplateElement::RawString(_) | TemplateElement::Comment(_) => true,
        TemplateElement::Expression(t) | TemplateElement::HtmlExpression(t) => {
            !t.block && t.params.is_empty() && t.hash.is_empty() && item_path(&t.name)
        }
        TemplateElement::HelperBlock(t) => {
            matches!(&t.name, Parameter::Name(n) if n == "if" || n == "unless")
                && matches!(t.params.as_slice(), [p] if item_path(p))
                && t.hash.is_empty()
                && t.block_param.is_none()
                && [&t.template, &t.inverse]
                    .into_iter()
                    .flatten()
                    .all(item_local)
        }
        _ => false,
    })
}

/// A path whose first segment names one of an item's values and whose every segment is a
/// plain name (no `@`, `../`; `this.title` is parsed as `title`).
fn item_path(p: &Parameter) -> bool {
    let Parameter::Path(handlebars::Path::Relative((segs, _))) = p else {
        return false;
    };
    matches!(segs.first(), Some(PathSeg::Named(first)) if crate::library::TEMPLATE_KEYS.contains(&first.as_str()))
        && segs
            .iter()
            .all(|s| matches!(s, PathSeg::Named(n) if !n.starts_with('@')))
}

/// What the body wrote for one item.
type Writes = Arc<str>;

/// The helper of one block: what its body wrote for each item, kept by the item's values.
#[derive(Default)]
struct LibraryBlock {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// By hash of the item's values; items whose hashes collide share a list.
    writes: HashMap<u64, Vec<(Value, Writes)>>,
    bytes: usize,
}

impl LibraryBlock {
    fn lookup(&self, hash: u64, item: &Value) -> Option<Writes> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.writes
            .get(&hash)?
            .iter()
            .find(|(v, _)| v == item)
            .map(|(_, w)| w.clone())
    }

    fn keep(&self, hash: u64, item: &Value, writes: Writes) {
        let size = writes.len() + item.to_string().len();
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.bytes + size > MAX_KEPT_BYTES {
            kept.writes.clear();
            kept.bytes = 0;
        }
        kept.writes
            .entry(hash)
            .or_default()
            .push((item.clone(), writes));
        kept.bytes += size;
    }
}

impl HelperDef for LibraryBlock {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let param = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("each", 0))?;
        let Some(body) = h.template() else {
            return Ok(());
        };
        let items = match param.value() {
            Value::Array(items) => items,
            // As `each` does in strict mode; rapport's context always has the list.
            _ if r.strict_mode() && param.is_value_missing() => {
                return Err(handlebars::RenderError::strict_error(param.relative_path()));
            }
            _ => return Ok(()),
        };
        for item in items {
            let hash = item_key(item);
            let writes = match self.lookup(hash, item) {
                Some(w) => w,
                None => {
                    let w = render_body(body, r, ctx, item)?;
                    self.keep(hash, item, w.clone());
                    w
                }
            };
            out.write(&writes)?;
        }
        Ok(())
    }
}

/// The body rendered with `item` as its context, as `each` renders it.
fn render_body<'reg: 'rc, 'rc>(
    body: &'rc Template,
    r: &'reg Handlebars<'reg>,
    ctx: &'rc Context,
    item: &Value,
) -> Result<Writes, handlebars::RenderError> {
    let mut rc = RenderContext::new(None);
    let mut block = BlockContext::new();
    block.set_base_value(item.clone());
    rc.push_block(block);
    let mut out = handlebars::StringOutput::new();
    body.render(r, ctx, &mut rc, &mut out)?;
    Ok(out.into_string()?.into())
}

/// The hash an item's kept output is filed under: of its `id` and `url` (its link's slot),
/// which tell a library's items apart, and of the whole value for anything else. Items
/// that share it are still told apart by all their values (see [`LibraryBlock::lookup`]);
/// hashing the summary and the rest as well cost as much as the comparison.
fn item_key(item: &Value) -> u64 {
    match (item.get("id"), item.get("url")) {
        (Some(id), Some(url)) => {
            let mut h = hasher();
            feed(&mut h, id);
            feed(&mut h, url);
            h.finish()
        }
        _ => hash_value(item),
    }
}

/// The hasher of kept output: fixed, so that a key is the same in every thread.
fn hasher() -> impl Hasher {
    foldhash::fast::FixedState::with_seed(0x5eed).build_hasher()
}

/// A hash of a JSON value (`Value` has none of its own).
fn hash_value(v: &Value) -> u64 {
    let mut h = hasher();
    feed(&mut h, v);
    h.finish()
}

/// Feeds a JSON value to a hasher, kind by kind.
fn feed(h: &mut impl Hasher, v: &Value) {
    match v {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => h.write_u8(1 + *b as u8),
        Value::Number(n) => {
            h.write_u8(3);
            h.write(n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.write_u8(4);
            h.write(s.as_bytes());
            h.write_u8(0xFF);
        }
        Value::Array(a) => {
            h.write_u8(5);
            h.write_usize(a.len());
            a.iter().for_each(|v| feed(h, v));
        }
        Value::Object(o) => {
            h.write_u8(6);
            h.write_usize(o.len());
            for (k, v) in o {
                h.write(k.as_bytes());
                h.write_u8(0xFF);
                feed(h, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `src` rendered with `data` by Handlebars' own `each`, and with the library blocks
    /// rewritten (twice: the second from what was kept); whether any block was rewritten.
    fn both(src: &str, data: &Value) -> (String, String, String, bool) {
        let mut hbs = Handlebars::new();
        hbs.set_strict_mode(true);
        hbs.register_template_string("t", src).unwrap();
        let before = hbs.render("t", data).unwrap();
        let mut rewritten = hbs.clone();
        prepare(&mut rewritten, |n| n == "t");
        let changed = rewritten.get_template("t") != hbs.get_template("t");
        let first = rewritten.render("t", data).unwrap();
        let second = rewritten.render("t", data).unwrap();
        (before, first, second, changed)
    }

    fn data() -> Value {
        json!({
            "first_name": "Ann",
            "month": "May",
            "sections": [],
            "library": [
                {"id": "a", "title": "One <b>", "url": "https://x.example/1", "summary": "<p>S1</p>\n<p>more</p>\n", "level": "beginner", "topics": ["t1", "t2"]},
                {"id": "b", "title": "Two", "url": "https://x.example/2", "summary": "", "level": null, "topics": []},
                {"id": "a", "title": "One <b>", "url": "https://x.example/1", "summary": "<p>S1</p>\n<p>more</p>\n", "level": "beginner", "topics": ["t1", "t2"]},
            ]
        })
    }

    #[test]
    fn item_local_blocks_render_as_each_renders_them() {
        for src in [
            include_str!("../../templates/newsletter.hbs").replace("{{> (lookup this \"template\") }}", ""),
            "{{#each library}}<a href=\"{{url}}\">{{title}}</a>{{{summary}}}{{/each}}".to_string(),
            "<ul>\n  {{#each library}}\n  <li>{{title}}\n    {{#if level}}({{level}}){{else}}(any){{/if}}\n  </li>\n  {{/each}}\n</ul>\n".to_string(),
            "{{#each library}}\n{{~title~}}\n{{#unless summary}}none{{/unless}}{{topics}}{{! a comment }}\n{{/each}}".to_string(),
            "{{#if library}}{{#each library}}{{{title}}} {{this.url}} {{/each}}{{/if}}".to_string(),
        ] {
            let (before, first, second, changed) = both(&src, &data());
            assert!(changed, "{src}");
            assert_eq!(before, first, "{src}");
            assert_eq!(before, second, "{src}");
        }
    }

    #[test]
    fn the_example_newsletter_writes_its_items_once_and_its_partials_stay_each() {
        let t =
            super::super::Templates::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), true)
                .unwrap();
        let uses_helper = |hbs: &Handlebars, name: &str| {
            format!("{:?}", hbs.get_template(name).unwrap()).contains(HELPER)
        };
        assert!(uses_helper(&t.hbs, "newsletter"));
        assert!(uses_helper(t.marking.as_ref().unwrap(), "newsletter"));
        assert!(!uses_helper(&t.hbs, "footer"));
    }

    #[test]
    fn two_blocks_on_the_same_items_keep_their_own_output() {
        let src = "{{#each library}}<a href=\"{{url}}\">{{title}}</a>{{/each}}\n{{#each library}}[{{id}}]{{/each}}";
        let (before, first, second, changed) = both(src, &data());
        assert!(changed);
        assert_eq!(before, first);
        assert_eq!(before, second);
    }

    #[test]
    fn a_template_included_by_name_stays_each() {
        let src = "{{#each library}}\n<h3>{{title}}</h3>\n{{{summary}}}\n{{/each}}\n";
        let mut hbs = Handlebars::new();
        hbs.register_template_string("t", src).unwrap();
        hbs.register_template_string("outer", "<div>\n  {{> t}}\n</div>\n")
            .unwrap();
        let before = hbs.render("outer", &data()).unwrap();
        assert!(
            before.contains("  <h3>One &lt;b&gt;</h3>\n  <p>S1</p>\n  <p>more</p>"),
            "{before}"
        );
        let template = hbs.get_template("t").cloned();
        prepare(&mut hbs, |n| n == "t");
        assert_eq!(hbs.get_template("t").cloned(), template);
        assert_eq!(hbs.render("outer", &data()).unwrap(), before);
    }

    #[test]
    fn blocks_reading_more_than_the_item_stay_each() {
        for src in [
            "{{#each library}}{{@index}}{{/each}}",
            "{{#each library}}{{../first_name}}{{/each}}",
            "{{#each library}}{{upper title}}{{/each}}",
            "{{#each library}}{{title}}{{else}}none{{/each}}",
            "{{#each library as |item|}}{{item.title}}{{/each}}",
            "{{#each library}}{{#with topics}}{{this}}{{/with}}{{/each}}",
            "{{#each library}}{{> p}}{{/each}}",
            "{{#each library}}{{author}}{{/each}}",
            "{{#each sections}}{{title}}{{/each}}",
        ] {
            let mut hbs = Handlebars::new();
            hbs.register_template_string("t", src).unwrap();
            let before = hbs.get_template("t").cloned();
            prepare(&mut hbs, |n| n == "t");
            assert_eq!(hbs.get_template("t").cloned(), before, "{src}");
        }
    }

    #[test]
    fn a_missing_list_is_an_error_in_strict_mode_and_nothing_otherwise() {
        let src = "a{{#each library}}{{title}}{{/each}}b";
        let mut hbs = Handlebars::new();
        hbs.register_template_string("t", src).unwrap();
        prepare(&mut hbs, |n| n == "t");
        assert_eq!(hbs.render("t", &json!({})).unwrap(), "ab");
        assert_eq!(hbs.render("t", &json!({"library": null})).unwrap(), "ab");
        hbs.set_strict_mode(true);
        assert!(hbs.render("t", &json!({})).is_err());
    }

    #[test]
    fn what_is_kept_is_bounded_and_told_apart_by_every_value() {
        let block = LibraryBlock::default();
        let a = json!({"title": "A", "n": 1});
        let b = json!({"title": "A", "n": 2});
        assert_ne!(hash_value(&a), hash_value(&b));
        let (c, d) = (
            json!({"id": "i", "url": "u", "title": "A"}),
            json!({"id": "i", "url": "u", "title": "B"}),
        );
        assert_eq!(item_key(&c), item_key(&d), "filed together");
        assert_ne!(item_key(&c), item_key(&json!({"id": "i", "url": "v"})));
        block.keep(item_key(&c), &c, "c".into());
        assert!(block.lookup(item_key(&d), &d).is_none(), "told apart");
        block.keep(7, &a, "x".into());
        assert!(
            block.lookup(7, &b).is_none(),
            "equal hashes, different values"
        );
        assert_eq!(&*block.lookup(7, &a).unwrap(), "x");
        let big: Writes = "y".repeat(MAX_KEPT_BYTES / 2).into();
        block.keep(1, &a, big.clone());
        block.keep(2, &a, big);
        assert!(block.kept.lock().unwrap().bytes <= MAX_KEPT_BYTES);
    }
}
