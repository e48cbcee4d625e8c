//! The library: training, guides and experts' articles, one Markdown file each under
//! `content/`, from which a newsletter with `[campaign.library]` is assembled per person.
//!
//! An item is a file `content/NAME.md` that starts with TOML front matter between `+++`
//! lines (`title`, `url`, `topics`, optional `segments`, `industries`, `level`, `published`,
//! `expires`); the Markdown after it is the item's summary, rendered to HTML once at load.
//!
//! [`Library::select`] picks a person's most relevant items: never one they were sent
//! before, never one expired or not yet published; then by how many of the topics they
//! chose the item has, whether it is written for one of their segments, for their industry,
//! and for their level; newest first among equals. It runs for every message of a
//! newsletter, so everything it compares is turned into bit masks and indexes at load
//! (a thousand items cost a few microseconds per person; BENCHMARKS.md, "The library").

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::Diagnostic;

/// The folder of library items inside the project directory.
pub const CONTENT_DIR: &str = "content";

/// The most items one newsletter may carry (`[campaign.library] items`).
pub const MAX_ITEMS: usize = 20;

/// Library items a person must have been sent before `advanced` items rank above
/// `beginner` ones: the programme introduces training early and follows it up.
pub const BEGINNER_ITEMS: usize = 6;

/// Rankings kept by [`Library::select`] at most before it starts again: one per kind of
/// reader (chosen topics, segments, industry, level, day) seen in a sending run.
const MAX_RANKINGS: usize = 4096;

/// Items ranked beyond the `n` asked for, so that a reader who was sent some of them
/// still finds `n` in the kept ranking.
const RANKING_SPARE: usize = 8;

/// The values a template sees of an item, in [`Item::template_values`]: the render
/// knows a block that reads only these reads nothing but the item.
pub const TEMPLATE_KEYS: [&str; 7] = [
    "id",
    "title",
    "url",
    "summary",
    "topics",
    "level",
    "published",
];

/// Who an item is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Beginner,
    Advanced,
}

/// One library item. Templates see `id`, `title`, `url`, `summary`, `topics`, `level` and
/// `published` in `library` (see `render::campaign`).
#[derive(Debug, Clone)]
pub struct Item {
    /// The file name without `.md`: how the links export names the item.
    pub id: String,
    pub title: String,
    /// Where the item lives; its identity (a person is never sent one URL twice).
    pub url: String,
    /// The Markdown body as HTML.
    pub summary: String,
    pub topics: Vec<String>,
    pub segments: Vec<String>,
    pub industries: Vec<String>,
    pub level: Option<Level>,
    /// `YYYY-MM-DD`.
    pub published: Option<String>,
    pub expires: Option<String>,
    /// The summary with its links prepared for tracking (see `render::links`), when the
    /// templates prepare links at load.
    pub prepared_summary: Option<String>,
    file: PathBuf,
    /// Line and column of its `url` in the file, for the warning when two items share one.
    url_at: (usize, usize),
    facts: Facts,
    /// What templates see of the item, made once (see [`Item::template_values`]).
    values: serde_json::Map<String, serde_json::Value>,
    /// Copies of `values` that messages gave back (see [`Item::lend_values`]).
    spare: Spare,
}

/// Template values given back by messages, to lend to the next ones. A clone of an item
/// starts with none.
#[derive(Debug, Default)]
struct Spare(std::sync::Mutex<Vec<serde_json::Value>>);

impl Clone for Spare {
    fn clone(&self) -> Self {
        Spare::default()
    }
}

/// Copies kept per item: a message holds them only while it renders, which is synchronous,
/// so each thread rendering at once needs one per position the item takes in a message.
/// Two serve the positions an item mostly takes on a two-core machine; a miss is a copy, as
/// without them. They at most triple what the library's template values take in memory.
const SPARE_VALUES: usize = 2;

/// What selection compares, as masks over the library's topics, segments and industries.
/// The library keeps them side by side in one vector, in the items' order, so that a
/// selection reads a few kilobytes in a row rather than a thousand scattered items.
#[derive(Debug, Clone, Copy, Default)]
struct Facts {
    topics: u64,
    segments: u64,
    industries: u64,
    published: Option<NaiveDate>,
    expires: Option<NaiveDate>,
    level: Option<Level>,
}

impl Item {
    /// The file the item was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What templates see of the item in `library`: `id`, `title`, `url`, `summary` (with
    /// its links prepared, where they are), `topics`, `level`, `published`. Made when the
    /// library loads, so that each message copies it rather than building it again (a
    /// newsletter run renders every item thousands of times).
    pub fn template_values(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.values
    }

    /// [`Item::template_values`] with `url` in place of the item's URL (a message's slot
    /// marker, see `render::links`), as an object: a copy a message gave back
    /// ([`Item::give_back`]) with this `url` when there is one, else a new copy. Copying the
    /// values for each message and dropping them after cost about as much as the rest of
    /// what a library adds to a message (BENCHMARKS.md, "The library inside a sending run").
    pub fn lend_values(&self, url: &str) -> serde_json::Value {
        use serde_json::Value;
        {
            let mut spare = self.lock_spare();
            let same_url = |v: &Value| v.get("url").and_then(Value::as_str) == Some(url);
            if let Some(at) = spare.iter().position(same_url) {
                return spare.swap_remove(at);
            }
        }
        let mut values = self.values.clone();
        if let Some(v) = values.get_mut("url") {
            *v = Value::String(url.to_string());
        }
        Value::Object(values)
    }

    /// Takes back values [`Item::lend_values`] lent, unchanged, for a later message; ones
    /// of another item, or beyond [`SPARE_VALUES`], are dropped.
    pub fn give_back(&self, values: serde_json::Value) {
        if values.get("id") != self.values.get("id") {
            return;
        }
        let mut spare = self.lock_spare();
        if spare.len() < SPARE_VALUES {
            spare.push(values);
        }
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, Vec<serde_json::Value>> {
        // A panic elsewhere while holding the lock leaves a list of whole values.
        self.spare
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes [`Item::template_values`] from the item's fields.
    fn make_values(&mut self) {
        use serde_json::json;
        let summary = self.prepared_summary.as_ref().unwrap_or(&self.summary);
        self.values = TEMPLATE_KEYS
            .into_iter()
            .zip([
                json!(self.id),
                json!(self.title),
                json!(self.url),
                json!(summary),
                json!(self.topics),
                json!(self.level),
                json!(self.published),
            ])
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    }
}

/// The front matter as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    title: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    topics: Vec<Spanned<String>>,
    #[serde(default)]
    segments: Vec<Spanned<String>>,
    #[serde(default)]
    industries: Vec<Spanned<String>>,
    #[serde(default)]
    level: Option<Spanned<String>>,
    #[serde(default)]
    published: Option<Spanned<DateToml>>,
    #[serde(default)]
    expires: Option<Spanned<DateToml>>,
}

/// A date written as a TOML date (`2026-11-03`) or as a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DateToml {
    Date(toml::value::Datetime),
    Text(String),
}

impl DateToml {
    fn parse(&self) -> Result<NaiveDate, String> {
        let text = match self {
            DateToml::Date(d) => match (d.date, d.time) {
                (Some(date), None) => date.to_string(),
                _ => return Err(format!("{d} is not a date; write a day like 2026-11-03")),
            },
            DateToml::Text(s) => s.clone(),
        };
        NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map_err(|e| format!("{text:?} is not a date ({e}); write a day like 2026-11-03"))
    }
}

/// What the items may name: the declared topics, the segments and the industries of the
/// form.
pub struct Names<'a> {
    pub topics: &'a [String],
    pub segments: &'a [String],
    pub industries: &'a [String],
}

/// Every item of `content/`, checked, newest first.
#[derive(Debug, Default)]
pub struct Library {
    items: Vec<Arc<Item>>,
    /// Each item's facts, in the items' order.
    facts: Vec<Facts>,
    by_url: HashMap<String, usize>,
    /// Mask bit → name, as the items' masks use them.
    topics: Vec<String>,
    segments: Vec<String>,
    industries: Vec<String>,
    /// Not errors, but worth a look (an item whose `url` another item has).
    pub warnings: Vec<Diagnostic>,
    /// Rankings by kind of reader (see [`Library::select`]).
    rankings: std::sync::Mutex<HashMap<RankingKey, Arc<[usize]>>>,
}

/// What a ranking depends on besides the items: the reader's masks, their level, the day
/// and how many items were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RankingKey {
    topics: u64,
    segments: u64,
    industry: Option<u64>,
    advanced: bool,
    today: NaiveDate,
    n: usize,
}

/// One person as selection sees them.
pub struct Reader<'a> {
    /// The topics they chose.
    pub topics: &'a [String],
    /// Segment name → whether they are in it.
    pub segments: &'a BTreeMap<String, bool>,
    pub industry: Option<&'a str>,
    /// The URLs of the items they were sent before.
    pub sent: &'a [String],
    /// The day of the send (items expire and are published by the day, in UTC).
    pub today: NaiveDate,
}

impl Library {
    /// Reads `DIR/content/*.md`; a missing folder is an empty library. Every problem is
    /// returned, located in its file.
    pub fn load(dir: &Path, names: &Names<'_>) -> Result<Library, Vec<Diagnostic>> {
        let root = dir.join(CONTENT_DIR);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&root) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "md") && p.is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        if names.topics.len() > 64 {
            return Err(vec![Diagnostic::file(
                &dir.join(crate::config::CAMPAIGNS_FILE),
                format!(
                    "[topics] declares {} topics; the library takes 64 at most",
                    names.topics.len()
                ),
            )]);
        }
        let mut library = Library {
            topics: names.topics.to_vec(),
            ..Library::default()
        };
        let mut problems = Vec::new();
        for path in files {
            match crate::config::read_text(&path) {
                Ok(text) => {
                    if let Some(item) = library.parse(&path, &text, names, &mut problems) {
                        library.add(item);
                    }
                }
                Err(e) => problems.push(Diagnostic::file(
                    &path,
                    format!("cannot read library item: {e}"),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        library.items.sort_by(|a, b| {
            b.facts
                .published
                .cmp(&a.facts.published)
                .then_with(|| a.id.cmp(&b.id))
        });
        library.facts = library.items.iter().map(|i| i.facts).collect();
        library.by_url = library
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.url.clone(), i))
            .rev()
            .collect();
        Ok(library)
    }

    fn add(&mut self, item: Item) {
        if let Some(other) = self.items.iter().find(|i| i.url == item.url) {
            let (line, col) = item.url_at;
            self.warnings.push(Diagnostic {
                file: item.file.clone(),
                line,
                col,
                message: format!(
                    "url {} is also the url of {}; they count as one item, so whoever was sent one is never sent the other",
                    item.url,
                    other.file.display()
                ),
            });
        }
        self.items.push(Arc::new(item));
    }

    /// The bit of `name` in `list`, added when new; `None` past 64 names.
    fn bit(list: &mut Vec<String>, name: &str) -> Option<u64> {
        let at = match list.iter().position(|n| n == name) {
            Some(at) => at,
            None => {
                list.push(name.to_string());
                list.len() - 1
            }
        };
        (at < 64).then(|| 1u64 << at)
    }

    /// One file: front matter, checks, summary.
    fn parse(
        &mut self,
        path: &Path,
        text: &str,
        names: &Names<'_>,
        problems: &mut Vec<Diagnostic>,
    ) -> Option<Item> {
        let before = problems.len();
        let Some(rest) = text
            .strip_prefix("+++\n")
            .or_else(|| text.strip_prefix("+++\r\n"))
        else {
            problems.push(Diagnostic::file(
                path,
                "a library item starts with TOML front matter between +++ lines (title, url, topics, ...)",
            ));
            return None;
        };
        let start = text.len() - rest.len();
        let Some(end) = rest.find("\n+++").map(|e| e + 1) else {
            problems.push(Diagnostic::at(
                path,
                text,
                text.len(),
                "the front matter never ends; close it with a line +++",
            ));
            return None;
        };
        let front = &rest[..end];
        let body = rest[end + 3..].trim_start_matches(['\r', '\n']);
        let at =
            |offset: usize, message: String| Diagnostic::at(path, text, start + offset, message);
        let raw: FrontMatter = match toml::from_str(front) {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(Diagnostic::toml(path, text, start, &e));
                return None;
            }
        };
        let title = raw.title.get_ref().trim();
        if title.is_empty() {
            problems.push(at(raw.title.span().start, "title is empty".into()));
        }
        let url = raw.url.get_ref().trim();
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => problems.push(at(
                raw.url.span().start,
                format!("url {url:?} is not an http:// or https:// address"),
            )),
        }
        let mut facts = Facts::default();
        for t in &raw.topics {
            if names.topics.contains(t.get_ref()) {
                facts.topics |= Library::bit(&mut self.topics, t.get_ref()).unwrap_or(0);
            } else {
                problems.push(at(
                    t.span().start,
                    format!(
                        "unknown topic \"{}\"; known: {} (declare it in [topics] of campaigns.toml)",
                        t.get_ref(),
                        if names.topics.is_empty() {
                            "none yet".to_string()
                        } else {
                            names.topics.join(", ")
                        }
                    ),
                ));
            }
        }
        let mut mask =
            |given: &[Spanned<String>], known: &[String], list: &mut Vec<String>, what: &str| {
                let mut m = 0;
                for g in given {
                    if !known.contains(g.get_ref()) {
                        problems.push(at(
                            g.span().start,
                            format!(
                                "unknown {what} \"{}\"; known: {}",
                                g.get_ref(),
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        ));
                        continue;
                    }
                    match Library::bit(list, g.get_ref()) {
                        Some(b) => m |= b,
                        None => problems.push(at(
                            g.span().start,
                            format!("the library's items name more than 64 {what} values in all"),
                        )),
                    }
                }
                m
            };
        facts.segments = mask(&raw.segments, names.segments, &mut self.segments, "segment");
        facts.industries = mask(
            &raw.industries,
            names.industries,
            &mut self.industries,
            "industry",
        );
        let level = raw.level.as_ref().and_then(|l| match l.get_ref().as_str() {
            "beginner" => Some(Level::Beginner),
            "advanced" => Some(Level::Advanced),
            other => {
                problems.push(at(
                    l.span().start,
                    format!("level \"{other}\": write \"beginner\" or \"advanced\""),
                ));
                None
            }
        });
        let mut date = |d: &Option<Spanned<DateToml>>, key: &str| {
            d.as_ref().and_then(|d| match d.get_ref().parse() {
                Ok(day) => Some(day),
                Err(e) => {
                    problems.push(at(d.span().start, format!("{key}: {e}")));
                    None
                }
            })
        };
        facts.published = date(&raw.published, "published");
        facts.expires = date(&raw.expires, "expires");
        facts.level = level;
        if problems.len() > before {
            return None;
        }
        let mut summary = String::new();
        // Control characters have no place in HTML (and one of them marks links, see
        // `render::links`).
        let body: String = body
            .chars()
            .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
            .collect();
        pulldown_cmark::html::push_html(
            &mut summary,
            pulldown_cmark::Parser::new_ext(&body, pulldown_cmark::Options::ENABLE_TABLES),
        );
        let day = |d: Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
        let mut item = Item {
            id: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            title: title.to_string(),
            url: url.to_string(),
            summary: summary.trim_end().to_string(),
            topics: raw.topics.iter().map(|t| t.get_ref().clone()).collect(),
            segments: raw.segments.iter().map(|t| t.get_ref().clone()).collect(),
            industries: raw.industries.iter().map(|t| t.get_ref().clone()).collect(),
            level,
            published: day(facts.published),
            expires: day(facts.expires),
            prepared_summary: None,
            file: path.to_path_buf(),
            url_at: crate::config::line_col(text, start + raw.url.span().start),
            facts,
            values: serde_json::Map::new(),
            spare: Spare::default(),
        };
        item.make_values();
        Some(item)
    }

    /// Gives each item its summary as `prepare` makes it (links made markers, see
    /// `render::links`); called once, right after loading.
    pub fn prepare_summaries(&mut self, mut prepare: impl FnMut(&str) -> Option<String>) {
        for item in &mut self.items {
            if let Some(item) = Arc::get_mut(item) {
                item.prepared_summary = prepare(&item.summary);
                item.make_values();
            }
        }
    }

    /// Every item, newest first.
    pub fn items(&self) -> &[Arc<Item>] {
        &self.items
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item at this URL (the first of its files, when two share it).
    pub fn by_url(&self, url: &str) -> Option<&Arc<Item>> {
        self.by_url.get(url).map(|&i| &self.items[i])
    }

    /// The `n` most relevant items for `reader` (see the module), most relevant first.
    pub fn select(&self, reader: &Reader<'_>, n: usize) -> Vec<Arc<Item>> {
        if n == 0 || self.items.is_empty() {
            return Vec::new();
        }
        let key = self.key(reader, n);
        let sent: Vec<usize> = reader
            .sent
            .iter()
            .filter_map(|u| self.by_url.get(u).copied())
            .collect();
        // Readers of one kind share a ranking: it is made once (with spare items) and kept,
        // and each reader takes its first `n` items they were not sent. Any item outside
        // the ranking ranks below all of it, so this is their own ranking's top `n`, unless
        // they were sent so many of it that fewer than `n` remain: then they get their own.
        let ranking = self.ranking(key);
        let mut chosen: Vec<usize> = ranking
            .iter()
            .filter(|i| !sent.contains(i))
            .take(n)
            .copied()
            .collect();
        // A short ranking holds every eligible item, so what it gave is all there is.
        if chosen.len() < n && ranking.len() == n + RANKING_SPARE {
            chosen = self.rank(&key, &sent, n);
        }
        chosen.into_iter().map(|i| self.items[i].clone()).collect()
    }

    /// The kind of reader `reader` is, for a selection of `n`.
    fn key(&self, reader: &Reader<'_>, n: usize) -> RankingKey {
        let mask = |names: &[String], has: &dyn Fn(&str) -> bool| {
            names
                .iter()
                .take(64)
                .enumerate()
                .filter(|(_, name)| has(name))
                .fold(0u64, |m, (i, _)| m | 1 << i)
        };
        RankingKey {
            topics: mask(&self.topics, &|t| reader.topics.iter().any(|c| c == t)),
            segments: mask(&self.segments, &|s| {
                reader.segments.get(s).copied().unwrap_or(false)
            }),
            industry: reader.industry.map(|i| mask(&self.industries, &|n| n == i)),
            advanced: reader.sent.len() >= BEGINNER_ITEMS,
            today: reader.today,
            n,
        }
    }

    /// The kept ranking of `key`'s readers, made now if there is none.
    fn ranking(&self, key: RankingKey) -> Arc<[usize]> {
        if let Some(r) = self.lock_rankings().get(&key) {
            return r.clone();
        }
        let ranking: Arc<[usize]> = self.rank(&key, &[], key.n + RANKING_SPARE).into();
        let mut kept = self.lock_rankings();
        if kept.len() >= MAX_RANKINGS {
            kept.clear();
        }
        kept.insert(key, ranking.clone());
        ranking
    }

    fn lock_rankings(&self) -> std::sync::MutexGuard<'_, HashMap<RankingKey, Arc<[usize]>>> {
        // A panic elsewhere while holding the lock leaves a map that is still whole.
        self.rankings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `take` best eligible items for `key`'s readers, leaving out `sent`, best first.
    fn rank(&self, key: &RankingKey, sent: &[usize], take: usize) -> Vec<usize> {
        let level = if key.advanced {
            Level::Advanced
        } else {
            Level::Beginner
        };
        let (topics, segments) = (key.topics, key.segments);
        let (known_industry, industry) = (key.industry.is_some(), key.industry.unwrap_or(0));
        // The best so far as (score, index); the items are newest first, so among equal
        // scores the lower index wins.
        let mut best: Vec<(u32, usize)> = Vec::with_capacity(take + 1);
        for (i, f) in self.facts.iter().enumerate() {
            if f.expires.is_some_and(|d| d <= key.today)
                || f.published.is_some_and(|d| d > key.today)
                || (f.segments != 0 && f.segments & segments == 0)
                || (f.industries != 0 && known_industry && f.industries & industry == 0)
                || sent.contains(&i)
            {
                continue;
            }
            let score = ((f.topics & topics).count_ones() << 8)
                | (u32::from(f.segments != 0) << 2)
                | (u32::from(f.industries & industry != 0) << 1)
                | u32::from(f.level == Some(level));
            if best.len() == take && best[take - 1].0 >= score {
                continue;
            }
            let at = best.partition_point(|(s, _)| *s >= score);
            best.insert(at, (score, i));
            best.truncate(take);
        }
        best.into_iter().map(|(_, i)| i).collect()
    }
}

#[cfg(test)]
mod tests;
