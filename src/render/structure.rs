//! What a set of templates does when rendered, read before Handlebars sees them: how deep
//! blocks nest and which partials each template includes. Handlebars renders by recursion
//! and has no depth limit, so a partial that includes itself (directly or through others),
//! or thousands of nested blocks, overflow the stack and abort the process. The set is
//! refused at load time instead (`check`, start, SIGHUP), with the place of the mistake.

use std::collections::{BTreeMap, HashMap};

/// The deepest a render may go, counting nested blocks and partials on the way down. The
/// example templates reach 6; a render thread's stack holds many times this limit.
pub const MAX_DEPTH: usize = 48;

/// Which partial an include names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A name written out: `{{> footer}}`.
    Named(String),
    /// A name computed at render time: `{{> (lookup this "template")}}`.
    Computed,
    /// `{{> @partial-block}}`: the caller's block, counted where the caller wrote it.
    Block,
}

/// A partial used by a template, at byte `at` of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Include {
    name: Target,
    /// Nested blocks around the include.
    depth: usize,
    at: usize,
}

/// One template's (or inline partial's) shape.
#[derive(Debug, Default, Clone)]
struct Shape {
    /// The deepest block nesting, and where it first went past [`MAX_DEPTH`].
    depth: usize,
    deepest_at: usize,
    includes: Vec<Include>,
    /// The outermost block of the template still open at its end: (byte offset of its
    /// opening mustache, that mustache as written). Only on the template's own node.
    unclosed: Option<(usize, String)>,
}

/// A problem found in one template: byte offset into its source and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureError {
    pub template: String,
    pub at: usize,
    pub message: String,
}

/// An edge of the partial graph: (target node, nesting at the include, byte offset).
type Edge = (String, usize, usize);

/// Node names: a template's name, or `TEMPLATE#NAME` for an inline partial it defines.
fn inline_node(template: &str, name: &str) -> String {
    format!("{template}#{name}")
}

/// Reads one template's mustaches: block nesting and partial includes (inline partials
/// become nodes of their own). Comments, raw blocks and escaped `\{{` are skipped.
fn scan(template: &str, src: &str) -> BTreeMap<String, Shape> {
    let mut nodes: BTreeMap<String, Shape> = BTreeMap::new();
    nodes.insert(template.to_string(), Shape::default());
    // The open blocks: the inline partial whose body it is (when it is one), where its
    // opening mustache is and how far that runs.
    let mut open: Vec<(Option<String>, usize, usize)> = Vec::new();
    let mut current: Vec<String> = vec![template.to_string()];
    let bytes = src.as_bytes();
    let mut i = 0;
    while let Some(rel) = src[i..].find("{{") {
        let start = i + rel;
        if start > 0 && bytes[start - 1] == b'\\' {
            i = start + 2;
            continue;
        }
        if src[start..].starts_with("{{{{") {
            // A raw block: nothing inside is parsed.
            i = match src[start + 4..].find("{{{{/") {
                Some(r) => src[start + 4 + r..]
                    .find("}}}}")
                    .map_or(src.len(), |e| start + 4 + r + e + 4),
                None => src.len(),
            };
            continue;
        }
        let inner_start = start + 2;
        let rest = &src[inner_start..];
        if rest.starts_with("!--") || rest.starts_with("~!--") {
            i = rest.find("--}}").map_or(src.len(), |e| inner_start + e + 4);
            continue;
        }
        let Some(end) = rest.find("}}") else {
            break;
        };
        i = inner_start + end + 2;
        let body = rest[..end].trim_start_matches('{').trim_start_matches('~');
        let body = body.trim_end_matches('~').trim();
        let depth = open.len();
        let node = current.last().cloned().unwrap_or_default();
        let shape = nodes.entry(node).or_default();
        if let Some(opened) = body.strip_prefix('#').or_else(|| {
            body.strip_prefix('^')
                .filter(|b| !b.trim().is_empty() && !b.starts_with('}'))
        }) {
            let opened = opened.trim_start();
            if depth + 1 > shape.depth {
                shape.depth = depth + 1;
                if shape.depth <= MAX_DEPTH + 1 {
                    shape.deepest_at = start;
                }
            }
            if let Some(partial) = opened.strip_prefix('>') {
                shape.includes.push(Include {
                    name: partial_name(partial),
                    depth: depth + 1,
                    at: start,
                });
                open.push((None, start, i));
            } else if let Some(decorator) = opened.strip_prefix("*inline") {
                match partial_name(decorator) {
                    Target::Named(name) => {
                        let n = inline_node(template, &name);
                        nodes.entry(n.clone()).or_default();
                        current.push(n.clone());
                        open.push((Some(n), start, i));
                    }
                    _ => open.push((None, start, i)),
                }
            } else {
                open.push((None, start, i));
            }
        } else if body.starts_with('/') {
            if let Some((Some(_), _, _)) = open.pop() {
                current.pop();
            }
        } else if let Some(partial) = body.strip_prefix('>') {
            if depth > shape.depth {
                shape.depth = depth;
                shape.deepest_at = start;
            }
            shape.includes.push(Include {
                name: partial_name(partial),
                depth,
                at: start,
            });
        } else if depth > shape.depth {
            shape.depth = depth;
            shape.deepest_at = start;
        }
    }
    if let Some((_, start, end)) = open.first() {
        let root = nodes.entry(template.to_string()).or_default();
        root.unclosed = Some((*start, src[*start..*end].to_string()));
    }
    nodes
}

/// A block a template opens and never closes: what Handlebars' own message for it
/// ("expected escape, expression, …", at the end of the file) does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unclosed {
    /// Byte offset of the opening mustache.
    pub at: usize,
    /// The opening mustache as written: `{{#if first_name}}`.
    pub opener: String,
    /// The tag that closes it: `{{/if}}` (`{{/layout}}` for `{{#> layout}}`, `{{/inline}}`
    /// for `{{#*inline "x"}}`).
    pub closer: String,
}

/// The outermost block `src` opens and never closes. Read only to explain a template
/// Handlebars refused.
pub fn unclosed_block(src: &str) -> Option<Unclosed> {
    let (at, opener) = scan("", src).remove("")?.unclosed?;
    let name: String = opener
        .trim_start_matches(['{', '~'])
        .trim_start_matches(['#', '^'])
        .trim_start_matches(['>', '*', ' '])
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '}' | '~'))
        .collect();
    Some(Unclosed {
        at,
        opener,
        closer: format!("{{{{/{name}}}}}"),
    })
}

/// The partial named at the start of `s` (`footer`, `"footer"`, `sections/x`, an
/// expression `(lookup …)`, or `@partial-block`).
fn partial_name(s: &str) -> Target {
    let s = s.trim_start();
    if s.starts_with("@partial-block") {
        return Target::Block;
    }
    if s.starts_with('(') || s.starts_with('@') {
        return Target::Computed;
    }
    let s = s.trim_start_matches(['"', '\'']);
    let name: String = s
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '}' | '~'))
        .collect();
    if name.is_empty() {
        Target::Computed
    } else {
        Target::Named(name)
    }
}

/// Checks a set of templates (name → source): no partial includes itself through any
/// chain (a partial chosen at render time may be any template without one of its own),
/// and no render goes deeper than [`MAX_DEPTH`]. Returns every problem found.
pub fn check(sources: &BTreeMap<String, String>) -> Vec<StructureError> {
    let mut nodes: BTreeMap<String, (String, Shape)> = BTreeMap::new();
    for (name, src) in sources {
        for (node, shape) in scan(name, src) {
            nodes.insert(node, (name.clone(), shape));
        }
    }
    // Templates a computed partial name may stand for: those without a computed include.
    let dynamic_targets: Vec<String> = nodes
        .iter()
        .filter(|(n, (_, s))| {
            !n.contains('#') && s.includes.iter().all(|i| i.name != Target::Computed)
        })
        .map(|(n, _)| n.clone())
        .collect();
    let edges = |node: &str| -> Vec<Edge> {
        let Some((template, shape)) = nodes.get(node) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for inc in &shape.includes {
            match &inc.name {
                Target::Named(name) => {
                    let local = inline_node(template, name);
                    let target = if nodes.contains_key(&local) {
                        local
                    } else {
                        name.clone()
                    };
                    if nodes.contains_key(&target) {
                        out.push((target, inc.depth, inc.at));
                    }
                }
                Target::Computed => {
                    for t in &dynamic_targets {
                        out.push((t.clone(), inc.depth, inc.at));
                    }
                }
                Target::Block => {}
            }
        }
        out
    };
    let mut problems = Vec::new();
    // Depth first, iteratively (the graph is the marketer's: no recursion of our own).
    // 0: not seen, 1: on the current path, 2: done (its deepest render known).
    let mut state: HashMap<String, u8> = HashMap::new();
    let mut deepest: HashMap<String, usize> = HashMap::new();
    for root in nodes.keys() {
        if state.get(root).copied().unwrap_or(0) != 0 {
            continue;
        }
        // (node, its edges, next edge to follow)
        let mut stack: Vec<(String, Vec<Edge>, usize)> = vec![(root.clone(), edges(root), 0)];
        state.insert(root.clone(), 1);
        while let Some((node, out, next)) = stack.last_mut() {
            if let Some((target, _, at)) = out.get(*next).cloned() {
                *next += 1;
                match state.get(&target).copied().unwrap_or(0) {
                    0 => {
                        state.insert(target.clone(), 1);
                        let e = edges(&target);
                        stack.push((target, e, 0));
                    }
                    1 => {
                        let from = node.clone();
                        let path: Vec<&str> = stack
                            .iter()
                            .map(|(n, _, _)| n.as_str())
                            .skip_while(|n| *n != target)
                            .collect();
                        problems.push(StructureError {
                            template: nodes[&from].0.clone(),
                            at,
                            message: format!(
                                "partial {target:?} includes itself ({} → {target}): a recursive partial would render for ever; break the loop",
                                path.join(" → ")
                            ),
                        });
                        // Counted as done so each loop is reported once.
                        deepest.insert(target, 0);
                    }
                    _ => {}
                }
            } else {
                let (node, out, _) = stack.pop().expect("non-empty");
                let own = nodes[&node].1.depth;
                let below = out
                    .iter()
                    .map(|(t, d, _)| d + 1 + deepest.get(t).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0);
                deepest.insert(node.clone(), own.max(below));
                state.insert(node, 2);
            }
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    // A template nested too deep on its own is reported there; else the outermost chain.
    if let Some((_, (template, shape))) = nodes.iter().find(|(_, (_, s))| s.depth > MAX_DEPTH) {
        return vec![StructureError {
            template: template.clone(),
            at: shape.deepest_at,
            message: format!(
                "blocks nest {} deep here, more than the {MAX_DEPTH} rapport renders; flatten the template",
                shape.depth
            ),
        }];
    }
    for (node, (template, shape)) in &nodes {
        let d = deepest.get(node).copied().unwrap_or(0);
        if d > MAX_DEPTH {
            // Where: the include that leads deepest.
            let at = edges(node)
                .iter()
                .max_by_key(|(t, dep, _)| dep + 1 + deepest.get(t).copied().unwrap_or(0))
                .map_or(shape.deepest_at, |(_, _, at)| *at);
            problems.push(StructureError {
                template: template.clone(),
                at,
                message: format!(
                    "blocks and partials nest {d} deep here, more than the {MAX_DEPTH} rapport renders; flatten the template"
                ),
            });
            // One report per chain: the first (outermost) template is enough.
            break;
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn partials_that_include_each_other_are_found_where_the_loop_closes() {
        let p = check(&set(&[
            ("a", "a{{> b}}"),
            ("b", "b{{> a}}"),
            ("newsletter", "x {{> a}}"),
        ]));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].template.as_str(), p[0].at), ("b", 1));
        assert!(p[0].message.contains("a → b → a"), "{}", p[0].message);
        let p = check(&set(&[("self", "{{#if x}}{{> self}}{{/if}}")]));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn inline_partials_and_computed_names_take_part() {
        let p = check(&set(&[(
            "t",
            r#"{{#*inline "row"}}<tr>{{> row}}</tr>{{/inline}}{{> row}}"#,
        )]));
        assert_eq!(p.len(), 1, "{p:?}");
        // A section template that includes the newsletter, which picks sections by name.
        let p = check(&set(&[
            (
                "newsletter",
                r#"{{#each sections}}{{> (lookup this "template")}}{{/each}}"#,
            ),
            ("sections/x", "{{> newsletter}}"),
        ]));
        assert_eq!(p.len(), 1, "{p:?}");
        let p = check(&set(&[
            (
                "newsletter",
                r#"{{#each s}}{{> (lookup this "template")}}{{/each}}"#,
            ),
            ("sections/x", "<p>{{> footer}}</p>"),
            ("footer", "{{#if a}}{{x}}{{/if}}"),
            ("layout", "{{> @partial-block}}"),
            ("page", "{{#> layout}}hi{{/layout}}"),
        ]));
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn deep_nesting_is_refused_at_its_place() {
        let deep = "{{#if x}}".repeat(5_000) + &"{{/if}}".repeat(5_000);
        let p = check(&set(&[("n", &deep)]));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].at, 9 * MAX_DEPTH, "the first block past the limit");
        let ok = "{{#if x}}".repeat(10) + &"{{/if}}".repeat(10);
        assert!(check(&set(&[("n", &ok)])).is_empty());
        // Depth adds up through partials.
        let half = "{{#if x}}".repeat(30) + "{{> inner}}" + &"{{/if}}".repeat(30);
        let p = check(&set(&[
            ("outer", &half),
            ("inner", &half.replace("inner", "leaf")),
            ("leaf", ""),
        ]));
        assert_eq!(p.len(), 1, "{p:?}");
    }

    /// The deepest set `check` accepts renders on a thread with tokio's 2 MiB stack (in a
    /// debug build, which uses more stack than a release one).
    #[test]
    fn the_deepest_accepted_render_fits_a_worker_stack() {
        let half = MAX_DEPTH / 2 - 1;
        let block = |inner: &str| {
            "{{#each @root.xs}}{{#if this}}".repeat(half / 2)
                + inner
                + &"{{/if}}{{/each}}".repeat(half / 2)
        };
        let sources = set(&[
            ("outer", &block("{{> inner}}")),
            ("inner", &block("{{@root.x}}")),
        ]);
        assert!(check(&sources).is_empty(), "{:?}", check(&sources));
        let out = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let mut hbs = handlebars::Handlebars::new();
                for (n, s) in &sources {
                    hbs.register_template_string(n, s).unwrap();
                }
                hbs.render("outer", &serde_json::json!({"xs": [1], "x": "deep"}))
                    .unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(out, "deep");
    }

    #[test]
    fn comments_raw_blocks_and_escapes_are_not_read() {
        let p = check(&set(&[(
            "a",
            r"{{!-- {{> a}} --}}{{! {{#if}} }}\{{> a}}{{{{raw}}}}{{> a}}{{{{/raw}}}}",
        )]));
        assert!(p.is_empty(), "{p:?}");
    }
}
