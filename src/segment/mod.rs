//! Segments: named rules over profile answers and behaviour, one per `segments/NAME.toml`.
//! They choose audiences, newsletter sections and `unless` conditions.

mod facts;
mod rule;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::config::Diagnostic;
use crate::profile::{Email, Form, Profile};

pub use facts::EventFacts;
pub use rule::{
    Activity, Behaviour, EventQuery, Facts, FieldTest, Names, NoFacts, Rule, RuleError, RuleToml,
    Scalar,
};

/// The folder of segment files inside the project directory.
pub const SEGMENTS_DIR: &str = "segments";

/// The segment every project has: all subscribed people (audiences only ever reach
/// subscribed profiles). A `segments/subscribed.toml` replaces it.
pub const EVERYONE: &str = "subscribed";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentToml {
    #[serde(default)]
    description: Option<String>,
    rule: Spanned<RuleToml>,
}

/// One named segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub description: String,
    pub rule: Rule,
}

impl Segment {
    /// Whether the profile is in the segment, given its behaviour.
    pub fn matches(&self, profile: &Profile, facts: &dyn Facts) -> bool {
        self.rule.matches(&profile.email, &profile.answers, facts)
    }

    /// Same, for an email and answers without a stored profile (samples, previews).
    pub fn matches_answers(
        &self,
        email: &Email,
        answers: &crate::profile::Answers,
        facts: &dyn Facts,
    ) -> bool {
        self.rule.matches(email, answers, facts)
    }
}

/// All segments of a project, by name.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    by_name: BTreeMap<String, Segment>,
}

impl Segments {
    /// Reads every `segments/*.toml` under `dir`, checking rules against the form and the
    /// campaign ids. All problems are returned, located.
    pub fn load(dir: &Path, form: &Form, names: &Names) -> Result<Segments, Vec<Diagnostic>> {
        let mut by_name = BTreeMap::new();
        by_name.insert(
            EVERYONE.to_string(),
            Segment {
                name: EVERYONE.into(),
                description: "Everyone who is subscribed".into(),
                rule: Rule::All(Vec::new()),
            },
        );
        let root = dir.join(SEGMENTS_DIR);
        let mut problems = Vec::new();
        let mut files: Vec<_> = match std::fs::read_dir(&root) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        for path in files {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problems.push(Diagnostic::file(
                    &path,
                    "segment file names may use letters, digits, - and _ only; rename the file",
                ));
                continue;
            }
            match Segment::parse_file(&path, &name, form, names) {
                Ok(seg) => {
                    by_name.insert(name, seg);
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(Segments { by_name })
        } else {
            Err(problems)
        }
    }

    /// The segment of this name.
    pub fn get(&self, name: &str) -> Option<&Segment> {
        self.by_name.get(name)
    }

    /// Every segment, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Segment> {
        self.by_name.values()
    }

    /// The names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

/// How deep a segment's `all` / `any` / `not` may nest. With [`MAX_RULE_VALUES`], this keeps
/// the compiled query within what SQLite and PostgreSQL run (SQLite refuses expressions
/// over 1,000 deep and statements over 32,766 values; lists compile to balanced trees).
pub const MAX_RULE_DEPTH: usize = 16;

/// How many values one segment may compare with (see [`Rule::size`]).
pub const MAX_RULE_VALUES: usize = 10_000;

impl Segment {
    fn parse_file(
        path: &Path,
        name: &str,
        form: &Form,
        names: &Names,
    ) -> Result<Segment, Vec<Diagnostic>> {
        let source = crate::config::read_text(path)
            .map_err(|e| vec![Diagnostic::file(path, format!("cannot read segment: {e}"))])?;
        Segment::parse(path, name, &source, form, names)
    }

    /// Parses the text of a segment file.
    pub fn parse(
        path: &Path,
        name: &str,
        source: &str,
        form: &Form,
        names: &Names,
    ) -> Result<Segment, Vec<Diagnostic>> {
        if let Some(at) = crate::config::too_deep(source) {
            return Err(vec![crate::config::too_deep_diagnostic(path, source, at)]);
        }
        let raw: SegmentToml =
            toml::from_str(source).map_err(|e| vec![Diagnostic::toml(path, source, 0, &e)])?;
        let mut errors = Vec::new();
        let rule = Rule::parse(&raw.rule, form, names, &mut errors);
        if let Some(r) = &rule {
            let at = raw.rule.span().start;
            if r.depth() > MAX_RULE_DEPTH {
                errors.push(RuleError {
                    offset: at,
                    message: format!(
                        "the rule nests all/any/not {} levels deep; at most {MAX_RULE_DEPTH} are allowed (split it into segments)",
                        r.depth()
                    ),
                });
            }
            if r.size() > MAX_RULE_VALUES {
                errors.push(RuleError {
                    offset: at,
                    message: format!(
                        "the rule compares with {} values; at most {MAX_RULE_VALUES} fit one database query (store a field that groups them instead)",
                        r.size()
                    ),
                });
            }
        }
        match (rule, errors.is_empty()) {
            (Some(rule), true) => Ok(Segment {
                name: name.to_string(),
                description: raw.description.unwrap_or_default(),
                rule,
            }),
            _ => Err(errors
                .into_iter()
                .map(|e| Diagnostic::at(path, source, e.offset, e.message))
                .collect()),
        }
    }
}

#[cfg(test)]
mod tests;
