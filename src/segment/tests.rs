use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::profile::{Answers, Email};

fn form() -> Form {
    Form::default()
}

fn campaigns() -> Names {
    Names {
        campaigns: vec!["welcome".into(), "newsletter".into()],
        events: vec!["course_completed".into()],
    }
}

fn parse(src: &str) -> Result<Segment, Vec<Diagnostic>> {
    Segment::parse(
        Path::new("segments/t.toml"),
        "t",
        src,
        &form(),
        &campaigns(),
    )
}

fn ann() -> (Email, Answers) {
    let a = Answers {
        name: Some("Ann Lee".into()),
        employees: Some(12),
        engagement: Some("learner".into()),
        products: Some(vec!["office".into()]),
        industry: Some("retail".into()),
        ..Answers::default()
    };
    (Email::parse("ann@shop.example").unwrap(), a)
}

struct Clicked(Vec<&'static str>);
impl Facts for Clicked {
    fn has(&self, b: &Behaviour) -> bool {
        matches!(b, Behaviour::ClickedTag { tag, .. } if self.0.contains(&tag.as_str()))
    }
}

#[test]
fn did_tests_declared_events_with_a_count() {
    use crate::event::{EventKind, EventSummary};
    let seg = parse(
        "[rule]\nall = [{ did = \"course_completed\", within_days = 30, times_at_least = 2 }]\n",
    )
    .unwrap();
    let (email, a) = ann();
    let day = 86_400;
    let now = 100 * day;
    let done = |at: i64, count: i64| EventSummary {
        kind: EventKind::External,
        campaign: None,
        tag: Some("course_completed".into()),
        last_at: at,
        count,
    };
    let facts = |events| crate::segment::EventFacts { events, now };
    assert!(!seg.matches_answers(&email, &a, &facts(vec![done(now - day, 1)])));
    assert!(seg.matches_answers(&email, &a, &facts(vec![done(now - day, 2)])));
    assert!(seg.matches_answers(
        &email,
        &a,
        &facts(vec![done(now - day, 1), done(now - 29 * day, 1)])
    ));
    // One of the two is older than 30 days.
    assert!(!seg.matches_answers(
        &email,
        &a,
        &facts(vec![done(now - day, 1), done(now - 31 * day, 1)])
    ));

    let e = parse("[rule]\nall = [{ did = \"trial_started\" }]\n").unwrap_err();
    assert_eq!((e[0].line, e[0].col), (2, 16), "{e:?}");
    assert!(
        e[0].message
            .contains("undeclared event \"trial_started\"; declared: course_completed"),
        "{e:?}"
    );
    let e = parse("[rule]\nall = [{ clicked_tag = \"x\", times_at_least = 2 }]\n").unwrap_err();
    assert!(
        e[0].message.contains("times_at_least goes with did"),
        "{e:?}"
    );
    let e =
        parse("[rule]\nall = [{ did = \"course_completed\", times_at_least = 0 }]\n").unwrap_err();
    assert!(e[0].message.contains("from 1 to 10000"), "{e:?}");
}

#[test]
fn the_design_example_matches_as_described() {
    let seg = parse(
        r#"
description = "Under 50 employees who prefer training"
[rule]
all = [
  { field = "employees", lt = 50 },
  { any = [ { field = "engagement", eq = "learner" },
            { clicked_tag = "training", within_days = 90 } ] },
]
"#,
    )
    .unwrap();
    let (email, mut a) = ann();
    assert!(seg.matches_answers(&email, &a, &NoFacts));
    a.engagement = Some("connector".into());
    assert!(!seg.matches_answers(&email, &a, &NoFacts));
    assert!(
        seg.matches_answers(&email, &a, &Clicked(vec!["training"])),
        "behaviour makes up for the declared type"
    );
    a.employees = Some(50);
    assert!(!seg.matches_answers(&email, &a, &Clicked(vec!["training"])));
    a.employees = None;
    assert!(
        !seg.matches_answers(&email, &a, &Clicked(vec!["training"])),
        "an unanswered number never compares"
    );
}

#[test]
fn field_tests() {
    let (email, a) = ann();
    let m = |rule: &str| {
        parse(&format!("[rule]\n{rule}\n"))
            .unwrap()
            .matches_answers(&email, &a, &NoFacts)
    };
    assert!(m(r#"field = "industry"
eq = "Retail""#));
    assert!(m(r#"field = "industry"
in = ["healthcare", "retail"]"#));
    assert!(m(r#"field = "industry"
ne = "healthcare""#));
    assert!(
        m(r#"field = "role"
ne = "owner""#),
        "ne matches an unanswered field"
    );
    assert!(m(r#"field = "products"
contains = "office""#));
    assert!(!m(r#"field = "products"
contains = "cloud""#));
    assert!(m(r#"field = "name"
contains = "lee""#));
    assert!(m(r#"field = "email"
contains = "@shop.example""#));
    assert!(m(r#"field = "employees"
gte = 12"#));
    assert!(!m(r#"field = "employees"
gt = 12"#));
    assert!(m(r#"field = "challenge"
present = false"#));
    assert!(m(r#"not = { field = "pcs", present = true }"#));
}

#[test]
fn located_errors() {
    let cases = [
        (
            "[rule]\nfield = \"employes\"\nlt = 5\n",
            2,
            "unknown field \"employes\"",
        ),
        (
            "[rule]\nfield = \"industry\"\neq = \"retial\"\n",
            3,
            "\"retial\" is not a choice of industry",
        ),
        (
            "[rule]\nfield = \"industry\"\nlt = 5\n",
            3,
            "compares numbers",
        ),
        (
            "[rule]\nfield = \"employees\"\neq = \"ten\"\n",
            3,
            "is a number",
        ),
        ("[rule]\nfield = \"employees\"\nbetween = 5\n", 3, "between"),
        (
            "[rule]\nall = [ { field = \"employees\" } ]\n",
            2,
            "has no test",
        ),
        (
            "[rule]\nopened = \"newsleter\"\n",
            2,
            "unknown campaign \"newsleter\"",
        ),
        (
            "[rule]\nclicked_tag = \"x\"\nfield = \"name\"\n",
            1,
            "one test",
        ),
        (
            "[rule]\nclicked_tag = \"x\"\nwithin_days = 0\n",
            3,
            "within_days",
        ),
        ("[rule]\n", 1, "empty rule"),
        ("rule = 5\n", 1, "invalid type"),
        (
            "[rule]\nfield = \"products\"\neq = \"office\"\n",
            3,
            "several values",
        ),
    ];
    for (src, line, text) in cases {
        let e = parse(src).expect_err(src);
        assert!(e[0].message.contains(text), "{src:?}: {:?}", e);
        assert_eq!(e[0].line, line, "{src:?}: {:?}", e);
        assert!(e[0].file.ends_with("segments/t.toml"));
    }
}

#[test]
fn builtin_subscribed_segment_exists_and_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("segments")).unwrap();
    std::fs::write(
        dir.path().join("segments/learners.toml"),
        "[rule]\nfield = \"engagement\"\neq = \"learner\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("segments/bad.toml"),
        "[rule]\nfield = \"nope\"\neq = 1\n",
    )
    .unwrap();
    let errs = Segments::load(dir.path(), &form(), &campaigns()).unwrap_err();
    assert_eq!(errs.len(), 1);
    std::fs::remove_file(dir.path().join("segments/bad.toml")).unwrap();
    let s = Segments::load(dir.path(), &form(), &campaigns()).unwrap();
    assert_eq!(s.names(), ["learners", "subscribed"]);
    let (email, a) = ann();
    assert!(
        s.get(EVERYONE)
            .unwrap()
            .matches_answers(&email, &a, &NoFacts)
    );
}

fn leaf() -> impl Strategy<Value = Rule> {
    prop_oneof![
        (1i64..200).prop_map(|n| Rule::Field {
            field: crate::profile::Question::Employees,
            test: FieldTest::Lt(n)
        }),
        prop::sample::select(vec!["learner", "connector", "collaborator"]).prop_map(|v| {
            Rule::Field {
                field: crate::profile::Question::Engagement,
                test: FieldTest::Eq(Scalar::Text(v.into())),
            }
        }),
        any::<bool>().prop_map(|p| Rule::Field {
            field: crate::profile::Question::Industry,
            test: FieldTest::Present(p)
        }),
        prop::sample::select(vec!["training", "community"]).prop_map(|t| Rule::Behaviour(
            Behaviour::ClickedTag {
                tag: t.into(),
                within_days: None
            }
        )),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Rule::All),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Rule::Any),
            inner.prop_map(|r| Rule::Not(Box::new(r))),
        ]
    })
}

fn profile() -> impl Strategy<Value = (Answers, Vec<&'static str>)> {
    (
        prop::option::of(1i64..300),
        prop::option::of(prop::sample::select(vec![
            "learner",
            "connector",
            "collaborator",
        ])),
        prop::option::of(Just("retail")),
        prop::sample::subsequence(vec!["training", "community"], 0..=2),
    )
        .prop_map(|(employees, engagement, industry, clicks)| {
            let a = Answers {
                employees,
                engagement: engagement.map(str::to_string),
                industry: industry.map(str::to_string),
                ..Answers::default()
            };
            (a, clicks)
        })
}

proptest! {
    #[test]
    fn double_negation_is_identity(r in rule(), (a, clicks) in profile()) {
        let email = Email::parse("p@example.com").unwrap();
        let facts = Clicked(clicks);
        let nn = Rule::Not(Box::new(Rule::Not(Box::new(r.clone()))));
        prop_assert_eq!(nn.matches(&email, &a, &facts), r.matches(&email, &a, &facts));
    }

    #[test]
    fn any_or_all_of_one_is_that_one(r in rule(), (a, clicks) in profile()) {
        let email = Email::parse("p@example.com").unwrap();
        let facts = Clicked(clicks);
        let m = r.matches(&email, &a, &facts);
        prop_assert_eq!(Rule::Any(vec![r.clone()]).matches(&email, &a, &facts), m);
        prop_assert_eq!(Rule::All(vec![r.clone()]).matches(&email, &a, &facts), m);
    }

    #[test]
    fn de_morgan(rs in prop::collection::vec(rule(), 0..4), (a, clicks) in profile()) {
        let email = Email::parse("p@example.com").unwrap();
        let facts = Clicked(clicks);
        let not_all = Rule::Not(Box::new(Rule::All(rs.clone())));
        let any_not = Rule::Any(rs.into_iter().map(|r| Rule::Not(Box::new(r))).collect());
        prop_assert_eq!(not_all.matches(&email, &a, &facts), any_not.matches(&email, &a, &facts));
    }
}
