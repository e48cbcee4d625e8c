//! The rule language of `segments/*.toml`: `all` / `any` / `not` over field tests and
//! behaviour tests, parsed with every node's position so that mistakes are located.

use serde::Deserialize;
use toml::Spanned;

use crate::profile::{Answers, Email, Form, Kind, Question};

/// A scalar in a rule: text, whole number or boolean.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Bool(bool),
    Text(String),
}

/// One rule node as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleToml {
    all: Option<Vec<Spanned<RuleToml>>>,
    any: Option<Vec<Spanned<RuleToml>>>,
    not: Option<Box<Spanned<RuleToml>>>,
    field: Option<Spanned<String>>,
    eq: Option<Spanned<Scalar>>,
    ne: Option<Spanned<Scalar>>,
    #[serde(rename = "in")]
    in_: Option<Spanned<Vec<Scalar>>>,
    lt: Option<Spanned<i64>>,
    lte: Option<Spanned<i64>>,
    gt: Option<Spanned<i64>>,
    gte: Option<Spanned<i64>>,
    contains: Option<Spanned<String>>,
    present: Option<Spanned<bool>>,
    clicked_tag: Option<Spanned<String>>,
    opened: Option<Spanned<String>>,
    received: Option<Spanned<String>>,
    clicked: Option<Spanned<String>>,
    did: Option<Spanned<String>>,
    within_days: Option<Spanned<i64>>,
    times_at_least: Option<Spanned<i64>>,
}

/// The names a rule may refer to besides the form's questions: the campaign ids of
/// `campaigns.toml` (for `opened` / `received` / `clicked`) and its declared `[events]`
/// (for `did`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub campaigns: Vec<String>,
    pub events: Vec<String>,
}

/// What people did with a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activity {
    Received,
    Opened,
    Clicked,
}

/// A test of one profile field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldTest {
    Eq(Scalar),
    Ne(Scalar),
    In(Vec<Scalar>),
    Lt(i64),
    Lte(i64),
    Gt(i64),
    Gte(i64),
    /// Text: contains the substring (any case). Products: owns that product.
    Contains(String),
    Present(bool),
}

/// A behaviour fact a rule asks about: evaluated against events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    ClickedTag {
        tag: String,
        within_days: Option<u32>,
    },
    Campaign {
        activity: Activity,
        campaign: String,
        within_days: Option<u32>,
    },
    /// Did something reported from elsewhere (`POST /api/v1/events`), at least `times`
    /// times.
    Did {
        name: String,
        within_days: Option<u32>,
        times: u32,
    },
}

/// A behaviour as an event query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventQuery<'a> {
    pub kind: crate::event::EventKind,
    pub campaign: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub within_days: Option<u32>,
    /// How many such events it takes (1: any).
    pub times: u32,
}

impl Behaviour {
    /// The events that prove this behaviour.
    pub fn event_query(&self) -> EventQuery<'_> {
        use crate::event::EventKind;
        match self {
            Behaviour::ClickedTag { tag, within_days } => EventQuery {
                kind: EventKind::Click,
                campaign: None,
                tag: Some(tag),
                within_days: *within_days,
                times: 1,
            },
            Behaviour::Did {
                name,
                within_days,
                times,
            } => EventQuery {
                kind: EventKind::External,
                campaign: None,
                tag: Some(name),
                within_days: *within_days,
                times: *times,
            },
            Behaviour::Campaign {
                activity,
                campaign,
                within_days,
            } => {
                let kind = match activity {
                    Activity::Received => EventKind::Sent,
                    Activity::Opened => EventKind::Open,
                    Activity::Clicked => EventKind::Click,
                };
                EventQuery {
                    kind,
                    campaign: Some(campaign),
                    tag: None,
                    within_days: *within_days,
                    times: 1,
                }
            }
        }
    }
}

/// A parsed, checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Field { field: Question, test: FieldTest },
    Behaviour(Behaviour),
}

/// Answers to behaviour questions for one profile.
pub trait Facts {
    /// Whether the profile did what `b` describes.
    fn has(&self, b: &Behaviour) -> bool;
}

/// No behaviour at all: a profile that has received nothing yet.
pub struct NoFacts;

impl Facts for NoFacts {
    fn has(&self, _: &Behaviour) -> bool {
        false
    }
}

/// A rule problem at a byte offset of the segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub offset: usize,
    pub message: String,
}

fn err(offset: usize, message: impl Into<String>) -> RuleError {
    RuleError {
        offset,
        message: message.into(),
    }
}

const KEYS: &str = "all, any, not, field (with eq, ne, in, lt, lte, gt, gte, contains or present), clicked_tag, opened, received, clicked, did";

impl Rule {
    /// Checks a rule as written against the form (field names, choice values, types).
    /// `names` are the campaign ids and event names rules may refer to.
    pub fn parse(
        node: &Spanned<RuleToml>,
        form: &Form,
        names: &Names,
        out: &mut Vec<RuleError>,
    ) -> Option<Rule> {
        let at = node.span().start;
        let r = node.get_ref();
        let mut kinds = Vec::new();
        if r.all.is_some() {
            kinds.push("all")
        }
        if r.any.is_some() {
            kinds.push("any")
        }
        if r.not.is_some() {
            kinds.push("not")
        }
        if r.field.is_some() {
            kinds.push("field")
        }
        if r.clicked_tag.is_some() {
            kinds.push("clicked_tag")
        }
        if r.opened.is_some() {
            kinds.push("opened")
        }
        if r.received.is_some() {
            kinds.push("received")
        }
        if r.clicked.is_some() {
            kinds.push("clicked")
        }
        if r.did.is_some() {
            kinds.push("did")
        }
        match kinds.as_slice() {
            [] => {
                out.push(err(at, format!("empty rule; use one of: {KEYS}")));
                return None;
            }
            [_] => {}
            many => {
                out.push(err(at, format!("a rule node has one test, this one has {}; wrap them in all = [...] or any = [...]", many.join(" and "))));
                return None;
            }
        }
        let ops = [
            r.eq.as_ref().map(|s| ("eq", s.span().start)),
            r.ne.as_ref().map(|s| ("ne", s.span().start)),
            r.in_.as_ref().map(|s| ("in", s.span().start)),
            r.lt.as_ref().map(|s| ("lt", s.span().start)),
            r.lte.as_ref().map(|s| ("lte", s.span().start)),
            r.gt.as_ref().map(|s| ("gt", s.span().start)),
            r.gte.as_ref().map(|s| ("gte", s.span().start)),
            r.contains.as_ref().map(|s| ("contains", s.span().start)),
            r.present.as_ref().map(|s| ("present", s.span().start)),
        ];
        let ops: Vec<(&str, usize)> = ops.into_iter().flatten().collect();
        if kinds[0] != "field" {
            if let Some((op, off)) = ops.first() {
                out.push(err(
                    *off,
                    format!("\"{op}\" tests a field; add field = \"...\" in its own rule node"),
                ));
                return None;
            }
        }
        if !matches!(
            kinds[0],
            "clicked_tag" | "opened" | "received" | "clicked" | "did"
        ) {
            if let Some(w) = &r.within_days {
                out.push(err(
                    w.span().start,
                    "within_days goes with clicked_tag, opened, received, clicked or did",
                ));
                return None;
            }
        }
        if kinds[0] != "did" {
            if let Some(t) = &r.times_at_least {
                out.push(err(
                    t.span().start,
                    "times_at_least goes with did = \"event name\"",
                ));
                return None;
            }
        }
        let children = |list: &Vec<Spanned<RuleToml>>, out: &mut Vec<RuleError>| {
            let parsed: Vec<Option<Rule>> = list
                .iter()
                .map(|c| Rule::parse(c, form, names, out))
                .collect();
            parsed.into_iter().collect::<Option<Vec<Rule>>>()
        };
        match kinds[0] {
            "all" => children(r.all.as_ref()?, out).map(Rule::All),
            "any" => children(r.any.as_ref()?, out).map(Rule::Any),
            "not" => Rule::parse(r.not.as_ref()?, form, names, out).map(|c| Rule::Not(Box::new(c))),
            "field" => parse_field(r, &ops, form, out),
            _ => {
                let within = match &r.within_days {
                    Some(w) if *w.get_ref() < 1 || *w.get_ref() > 3650 => {
                        out.push(err(
                            w.span().start,
                            "within_days must be a whole number of days from 1 to 3650",
                        ));
                        return None;
                    }
                    Some(w) => Some(*w.get_ref() as u32),
                    None => None,
                };
                if let Some(name) = &r.did {
                    return parse_did(name, within, r.times_at_least.as_ref(), names, out);
                }
                if let Some(tag) = &r.clicked_tag {
                    if tag.get_ref().trim().is_empty() {
                        out.push(err(
                            tag.span().start,
                            "clicked_tag needs a tag name, as in data-tag=\"training\"",
                        ));
                        return None;
                    }
                    return Some(Rule::Behaviour(Behaviour::ClickedTag {
                        tag: tag.get_ref().clone(),
                        within_days: within,
                    }));
                }
                let (activity, c) = match (&r.opened, &r.received, &r.clicked) {
                    (Some(c), _, _) => (Activity::Opened, c),
                    (_, Some(c), _) => (Activity::Received, c),
                    (_, _, Some(c)) => (Activity::Clicked, c),
                    _ => return None,
                };
                if !names.campaigns.iter().any(|k| k == c.get_ref()) {
                    out.push(err(
                        c.span().start,
                        format!(
                            "unknown campaign \"{}\"; known: {}",
                            c.get_ref(),
                            names.campaigns.join(", ")
                        ),
                    ));
                    return None;
                }
                Some(Rule::Behaviour(Behaviour::Campaign {
                    activity,
                    campaign: c.get_ref().clone(),
                    within_days: within,
                }))
            }
        }
    }

    /// Whether a profile with these answers and facts matches.
    pub fn matches(&self, email: &Email, answers: &Answers, facts: &dyn Facts) -> bool {
        match self {
            Rule::All(rules) => rules.iter().all(|r| r.matches(email, answers, facts)),
            Rule::Any(rules) => rules.iter().any(|r| r.matches(email, answers, facts)),
            Rule::Not(r) => !r.matches(email, answers, facts),
            Rule::Field { field, test } => field_matches(*field, test, email, answers),
            Rule::Behaviour(b) => facts.has(b),
        }
    }

    /// How deep `all` / `any` / `not` nest (a single test is 1).
    pub fn depth(&self) -> usize {
        match self {
            Rule::All(rs) | Rule::Any(rs) => 1 + rs.iter().map(Rule::depth).max().unwrap_or(0),
            Rule::Not(r) => 1 + r.depth(),
            Rule::Field { .. } | Rule::Behaviour(_) => 1,
        }
    }

    /// How many values the rule compares with (each test one, an `in` list one per value):
    /// the size of the database query it becomes.
    pub fn size(&self) -> usize {
        match self {
            Rule::All(rs) | Rule::Any(rs) => rs.iter().map(Rule::size).sum::<usize>().max(1),
            Rule::Not(r) => r.size(),
            Rule::Field {
                test: FieldTest::In(vs),
                ..
            } => vs.len().max(1),
            Rule::Field { .. } | Rule::Behaviour(_) => 1,
        }
    }

    /// Every behaviour fact the rule asks about (to load them once for a whole audience).
    pub fn behaviours(&self, out: &mut Vec<Behaviour>) {
        match self {
            Rule::All(rs) | Rule::Any(rs) => rs.iter().for_each(|r| r.behaviours(out)),
            Rule::Not(r) => r.behaviours(out),
            Rule::Field { .. } => {}
            Rule::Behaviour(b) => {
                if !out.contains(b) {
                    out.push(b.clone())
                }
            }
        }
    }
}

fn parse_did(
    name: &Spanned<String>,
    within_days: Option<u32>,
    times: Option<&Spanned<i64>>,
    names: &Names,
    out: &mut Vec<RuleError>,
) -> Option<Rule> {
    if !names.events.iter().any(|e| e == name.get_ref()) {
        let known = if names.events.is_empty() {
            "none (declare them in campaigns.toml: [events] names = [\"course_completed\"])"
                .to_string()
        } else {
            names.events.join(", ")
        };
        out.push(err(
            name.span().start,
            format!("undeclared event \"{}\"; declared: {known}", name.get_ref()),
        ));
        return None;
    }
    let times = match times {
        None => 1,
        Some(t) if (1..=10_000).contains(t.get_ref()) => *t.get_ref() as u32,
        Some(t) => {
            out.push(err(
                t.span().start,
                "times_at_least must be a whole number from 1 to 10000",
            ));
            return None;
        }
    };
    Some(Rule::Behaviour(Behaviour::Did {
        name: name.get_ref().clone(),
        within_days,
        times,
    }))
}

fn parse_field(
    r: &RuleToml,
    ops: &[(&str, usize)],
    form: &Form,
    out: &mut Vec<RuleError>,
) -> Option<Rule> {
    let f = r.field.as_ref()?;
    let Some(q) = Question::from_key(f.get_ref()) else {
        let known: Vec<_> = Question::ALL.iter().map(|q| q.key()).collect();
        out.push(err(
            f.span().start,
            format!(
                "unknown field \"{}\"; known: {}",
                f.get_ref(),
                known.join(", ")
            ),
        ));
        return None;
    };
    let (op, off) = match ops {
        [] => {
            out.push(err(f.span().start, format!("field \"{}\" has no test; add one of eq, ne, in, lt, lte, gt, gte, contains, present", q.key())));
            return None;
        }
        [one] => *one,
        [_, (second, off), ..] => {
            out.push(err(*off, format!("one test per field rule; \"{second}\" is a second one (use all = [...] to combine)")));
            return None;
        }
    };
    let kind = q.kind();
    let numeric = matches!(kind, Kind::Number { .. });
    let is_choice = matches!(kind, Kind::Choice | Kind::MultiChoice);
    // A value must have the field's type, and a choice must be a configured choice: a typo
    // would otherwise make a segment silently empty.
    // The value in the form's own spelling (choices are matched without regard to case).
    let canon = |v: &Scalar, off: usize, out: &mut Vec<RuleError>| -> Option<Scalar> {
        match (v, numeric) {
            (Scalar::Int(_), true) => Some(v.clone()),
            (Scalar::Text(s), false) if is_choice => {
                match form
                    .choices(q)
                    .iter()
                    .find(|c| c.value.eq_ignore_ascii_case(s))
                {
                    Some(c) => Some(Scalar::Text(c.value.clone())),
                    None => {
                        let known: Vec<_> =
                            form.choices(q).iter().map(|c| c.value.as_str()).collect();
                        out.push(err(off, format!("\"{s}\" is not a choice of {}, so this rule could never match; choices: {}", q.key(), known.join(", "))));
                        None
                    }
                }
            }
            (Scalar::Text(_), false) => Some(v.clone()),
            (_, true) => {
                out.push(err(
                    off,
                    format!("{} is a number; compare it with a whole number", q.key()),
                ));
                None
            }
            (_, false) => {
                out.push(err(
                    off,
                    format!("{} is text; compare it with a \"quoted\" value", q.key()),
                ));
                None
            }
        }
    };
    let test = match op {
        "eq" | "ne" => {
            let v = if op == "eq" {
                r.eq.as_ref()?
            } else {
                r.ne.as_ref()?
            };
            if kind == Kind::MultiChoice {
                out.push(err(
                    off,
                    format!(
                        "{} holds several values; use contains = \"...\" or in = [...]",
                        q.key()
                    ),
                ));
                return None;
            }
            let v = canon(v.get_ref(), off, out)?;
            if op == "eq" {
                FieldTest::Eq(v)
            } else {
                FieldTest::Ne(v)
            }
        }
        "in" => {
            let vs = r.in_.as_ref()?;
            if vs.get_ref().is_empty() {
                out.push(err(off, "in = [] can never match; list at least one value"));
                return None;
            }
            let vs: Option<Vec<Scalar>> = vs.get_ref().iter().map(|v| canon(v, off, out)).collect();
            FieldTest::In(vs?)
        }
        "lt" | "lte" | "gt" | "gte" => {
            if !numeric {
                out.push(err(off, format!("\"{op}\" compares numbers, and {} is not a number (numbers: employees, pcs, servers)", q.key())));
                return None;
            }
            match op {
                "lt" => FieldTest::Lt(*r.lt.as_ref()?.get_ref()),
                "lte" => FieldTest::Lte(*r.lte.as_ref()?.get_ref()),
                "gt" => FieldTest::Gt(*r.gt.as_ref()?.get_ref()),
                _ => FieldTest::Gte(*r.gte.as_ref()?.get_ref()),
            }
        }
        "contains" => {
            let s = r.contains.as_ref()?.get_ref();
            if numeric {
                out.push(err(
                    off,
                    format!("\"contains\" tests text, and {} is a number", q.key()),
                ));
                return None;
            }
            match canon(&Scalar::Text(s.clone()), off, out)? {
                Scalar::Text(s) => FieldTest::Contains(s),
                _ => return None,
            }
        }
        _ => FieldTest::Present(*r.present.as_ref()?.get_ref()),
    };
    Some(Rule::Field { field: q, test })
}

fn field_matches(q: Question, test: &FieldTest, email: &Email, a: &Answers) -> bool {
    let text = |q: Question| -> Option<&str> {
        match q {
            Question::Email => Some(email.as_str()),
            Question::Name => a.name.as_deref(),
            Question::Role => a.role.as_deref(),
            Question::Industry => a.industry.as_deref(),
            Question::BusinessNeed => a.business_need.as_deref(),
            Question::Challenge => a.challenge.as_deref(),
            Question::Engagement => a.engagement.as_deref(),
            Question::Frequency => a.frequency.as_deref(),
            _ => None,
        }
    };
    let number = match q {
        Question::Employees => a.employees,
        Question::Pcs => a.pcs,
        Question::Servers => a.servers,
        _ => None,
    };
    let scalar_eq = |v: &Scalar| match (v, number, text(q)) {
        (Scalar::Int(n), Some(x), _) => x == *n,
        (Scalar::Text(s), _, Some(t)) => t.eq_ignore_ascii_case(s),
        _ => false,
    };
    if q.kind() == crate::profile::Kind::MultiChoice {
        let owned = match q {
            Question::Topics => a.topics.as_deref(),
            _ => a.products.as_deref(),
        }
        .unwrap_or_default();
        let has = |s: &str| owned.iter().any(|p| p.eq_ignore_ascii_case(s));
        return match test {
            FieldTest::Contains(s) => has(s),
            FieldTest::In(vs) => vs.iter().any(|v| matches!(v, Scalar::Text(s) if has(s))),
            FieldTest::Present(p) => a.is_answered(q) == *p,
            _ => false,
        };
    }
    match test {
        FieldTest::Eq(v) => scalar_eq(v),
        FieldTest::Ne(v) => !scalar_eq(v),
        FieldTest::In(vs) => vs.iter().any(scalar_eq),
        FieldTest::Lt(n) => number.is_some_and(|x| x < *n),
        FieldTest::Lte(n) => number.is_some_and(|x| x <= *n),
        FieldTest::Gt(n) => number.is_some_and(|x| x > *n),
        FieldTest::Gte(n) => number.is_some_and(|x| x >= *n),
        FieldTest::Contains(s) => {
            text(q).is_some_and(|t| t.to_ascii_lowercase().contains(&s.to_ascii_lowercase()))
        }
        FieldTest::Present(p) => a.is_answered(q) == *p,
    }
}
