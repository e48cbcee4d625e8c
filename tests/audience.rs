//! Audiences are selected in SQL; single profiles are matched in Rust. Both must give the
//! same answer for every rule: random rules over random profiles and events, on SQLite and
//! PostgreSQL.

mod common;

use common::TestApp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rapport::profile::{Answers, Email, Question, Status};
use rapport::segment::{Activity, Behaviour, EventFacts, FieldTest, Rule, Scalar};
use rapport::store::{AudienceQuery, EventKind, Reported, now};

on_both_backends!(
    sql_and_rust_agree_on_every_rule,
    audience_is_subscribed_only_and_paged,
    the_largest_rule_check_allows_runs_on_the_database
);

const ENGAGEMENTS: [&str; 3] = ["learner", "connector", "collaborator"];
const INDUSTRIES: [&str; 3] = ["retail", "manufacturing", "healthcare"];
const PRODUCTS: [&str; 3] = ["office", "windows", "cloud"];
const TAGS: [&str; 2] = ["training", "community"];
const CAMPAIGNS: [&str; 2] = ["welcome", "newsletter"];
const REPORTED: [&str; 2] = ["course_completed", "trial_started"];

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

fn random_answers(rng: &mut StdRng, i: usize) -> Answers {
    let maybe = |rng: &mut StdRng| rng.random_bool(0.7);
    Answers {
        name: maybe(rng).then(|| {
            format!(
                "Person {i} {}",
                if rng.random_bool(0.5) {
                    "Smith"
                } else {
                    "JONES"
                }
            )
        }),
        employees: maybe(rng).then(|| rng.random_range(1..400)),
        pcs: maybe(rng).then(|| rng.random_range(0..50)),
        engagement: maybe(rng).then(|| pick(rng, &ENGAGEMENTS).to_string()),
        industry: maybe(rng).then(|| pick(rng, &INDUSTRIES).to_string()),
        products: maybe(rng).then(|| {
            let mut p: Vec<String> = PRODUCTS
                .iter()
                .filter(|_| rng.random_bool(0.5))
                .map(|s| s.to_string())
                .collect();
            p.dedup();
            p
        }),
        ..Answers::default()
    }
}

fn random_leaf(rng: &mut StdRng) -> Rule {
    let field = |field, test| Rule::Field { field, test };
    match rng.random_range(0..13) {
        0 => field(Question::Employees, FieldTest::Lt(rng.random_range(1..400))),
        1 => field(
            Question::Employees,
            FieldTest::Gte(rng.random_range(1..400)),
        ),
        2 => field(
            Question::Pcs,
            FieldTest::Eq(Scalar::Int(rng.random_range(0..50))),
        ),
        3 => field(
            Question::Engagement,
            FieldTest::Eq(Scalar::Text(pick(rng, &ENGAGEMENTS).into())),
        ),
        4 => field(
            Question::Industry,
            FieldTest::Ne(Scalar::Text(pick(rng, &INDUSTRIES).into())),
        ),
        5 => field(
            Question::Industry,
            FieldTest::In(vec![
                Scalar::Text(pick(rng, &INDUSTRIES).into()),
                Scalar::Text(pick(rng, &INDUSTRIES).into()),
            ]),
        ),
        6 => field(
            Question::Products,
            FieldTest::Contains(pick(rng, &PRODUCTS).into()),
        ),
        7 => field(
            Question::Name,
            FieldTest::Contains(if rng.random_bool(0.5) {
                "smith".into()
            } else {
                "Jones".into()
            }),
        ),
        8 => field(
            Question::Employees,
            FieldTest::Present(rng.random_bool(0.5)),
        ),
        9 => Rule::Behaviour(Behaviour::ClickedTag {
            tag: pick(rng, &TAGS).into(),
            within_days: rng.random_bool(0.5).then_some(30),
        }),
        11 | 12 => Rule::Behaviour(Behaviour::Did {
            name: pick(rng, &REPORTED).into(),
            within_days: rng.random_bool(0.5).then_some(30),
            times: rng.random_range(1..4),
        }),
        _ => Rule::Behaviour(Behaviour::Campaign {
            activity: [Activity::Received, Activity::Opened, Activity::Clicked]
                [rng.random_range(0..3)],
            campaign: pick(rng, &CAMPAIGNS).into(),
            within_days: rng.random_bool(0.5).then_some(30),
        }),
    }
}

fn random_rule(rng: &mut StdRng, depth: u32) -> Rule {
    if depth == 0 || rng.random_bool(0.35) {
        return random_leaf(rng);
    }
    match rng.random_range(0..3) {
        0 => Rule::All(
            (0..rng.random_range(0..4))
                .map(|_| random_rule(rng, depth - 1))
                .collect(),
        ),
        1 => Rule::Any(
            (0..rng.random_range(0..4))
                .map(|_| random_rule(rng, depth - 1))
                .collect(),
        ),
        _ => Rule::Not(Box::new(random_rule(rng, depth - 1))),
    }
}

async fn all_ids(app: &TestApp, q: &AudienceQuery) -> Vec<i64> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = app.store.audience_page(q, after, 37).await.unwrap();
        if page.is_empty() {
            return out;
        }
        after = *page.last().unwrap();
        out.extend(page);
    }
}

/// `n` subscribed profiles `{prefix}{i}@example.com` with random answers.
async fn random_subscribers(
    app: &TestApp,
    rng: &mut StdRng,
    prefix: &str,
    n: usize,
) -> Vec<(Email, Answers)> {
    let rows: Vec<(Email, Answers)> = (0..n)
        .map(|i| {
            (
                Email::parse(&format!("{prefix}{i}@example.com")).unwrap(),
                random_answers(rng, i),
            )
        })
        .collect();
    app.store
        .insert_profiles(&rows, Status::Subscribed, "test")
        .await
        .unwrap();
    rows
}

async fn sql_and_rust_agree_on_every_rule(app: TestApp) {
    let mut rng = StdRng::seed_from_u64(42);
    let rows = random_subscribers(&app, &mut rng, "p", 150).await;
    let t = now();
    let mut profiles = Vec::new();
    for (email, _) in &rows {
        let p = app.store.profile_by_email(email).await.unwrap().unwrap();
        for _ in 0..rng.random_range(0..4) {
            let age = if rng.random_bool(0.5) { 5 } else { 60 } * 86_400;
            let (kind, tag) = match rng.random_range(0..3) {
                0 => (EventKind::Sent, None),
                1 => (EventKind::Open, None),
                _ => (EventKind::Click, Some(pick(&mut rng, &TAGS))),
            };
            app.store
                .record_event(p.id, kind, Some(pick(&mut rng, &CAMPAIGNS)), tag, t - age)
                .await
                .unwrap();
        }
        // Events reported from elsewhere, some in the same second (summarised together).
        let mut reported = Vec::new();
        for _ in 0..rng.random_range(0..5) {
            let age = [5, 60][rng.random_range(0..2)] * 86_400 + rng.random_range(0..2);
            reported.push(Reported {
                email_key: email.key(),
                name: pick(&mut rng, &REPORTED).into(),
                at: t - age,
                properties: None,
            });
        }
        app.store.record_external(&reported).await.unwrap();
        let facts = app.store.event_facts(p.id, t).await.unwrap();
        profiles.push((p, facts));
    }
    let mut informative = 0;
    for round in 0..150 {
        let rule = random_rule(&mut rng, 3);
        let expected: Vec<i64> = profiles
            .iter()
            .filter(|(p, f)| rule.matches(&p.email, &p.answers, f))
            .map(|(p, _)| p.id)
            .collect();
        let q = AudienceQuery::new(&rule, t);
        let got = all_ids(&app, &q).await;
        assert_eq!(
            got,
            expected,
            "round {round}: rule {rule:?}\nSQL: {}",
            q.sql()
        );
        assert_eq!(
            app.store.audience_count(&q).await.unwrap(),
            expected.len() as i64
        );
        if !expected.is_empty() && expected.len() < profiles.len() {
            informative += 1;
        }
    }
    assert!(
        informative > 50,
        "most rules split the profiles ({informative} of 150 did)"
    );
}

async fn audience_is_subscribed_only_and_paged(app: TestApp) {
    let rows: Vec<(Email, Answers)> = (0..10)
        .map(|i| {
            (
                Email::parse(&format!("s{i}@example.com")).unwrap(),
                Answers::default(),
            )
        })
        .collect();
    app.store
        .insert_profiles(&rows[..7], Status::Subscribed, "test")
        .await
        .unwrap();
    app.store
        .insert_profiles(&rows[7..], Status::Pending, "test")
        .await
        .unwrap();
    let everyone = AudienceQuery::new(&Rule::All(vec![]), now());
    assert_eq!(app.store.audience_count(&everyone).await.unwrap(), 7);
    assert_eq!(all_ids(&app, &everyone).await.len(), 7);
    let nobody = AudienceQuery::new(&Rule::Any(vec![]), now());
    assert_eq!(app.store.audience_count(&nobody).await.unwrap(), 0);
}

/// A rule at `check`'s limits (values and nesting, see `segment::MAX_RULE_*`) runs on the
/// database and agrees with Rust: lists compile to `IN (…)` and balanced trees, not to a
/// chain of ORs over SQLite's 1,000-deep limit ("Expression tree is too large").
async fn the_largest_rule_check_allows_runs_on_the_database(app: TestApp) {
    use rapport::segment::{MAX_RULE_DEPTH, MAX_RULE_VALUES};
    let mut rng = StdRng::seed_from_u64(7);
    let rows = random_subscribers(&app, &mut rng, "big", 60).await;
    let field = |field, test| Rule::Field { field, test };
    // 600 alternatives, a 500-value product list, and the rest of the budget in one `in`.
    let employees: Vec<Rule> = (0..600)
        .map(|n| field(Question::Employees, FieldTest::Eq(Scalar::Int(n))))
        .collect();
    let products: Vec<Scalar> = (0..500)
        .map(|i| {
            Scalar::Text(if i == 7 {
                "cloud".into()
            } else {
                format!("p{i}")
            })
        })
        .collect();
    let names: Vec<Scalar> = (0..MAX_RULE_VALUES - 1_100)
        .map(|i| Scalar::Text(format!("person {i} smith")))
        .collect();
    let mut rule = Rule::Any(vec![
        Rule::Any(employees),
        field(Question::Products, FieldTest::In(products)),
        field(Question::Name, FieldTest::In(names)),
    ]);
    while rule.depth() < MAX_RULE_DEPTH {
        rule = Rule::Not(Box::new(rule));
    }
    assert_eq!(
        (rule.depth(), rule.size()),
        (MAX_RULE_DEPTH, MAX_RULE_VALUES)
    );
    let mut expected = Vec::new();
    for (email, _) in &rows {
        let p = app.store.profile_by_email(email).await.unwrap().unwrap();
        if rule.matches(&p.email, &p.answers, &EventFacts::default()) {
            expected.push(p.id);
        }
    }
    let q = AudienceQuery::new(&rule, now());
    assert_eq!(all_ids(&app, &q).await, expected);
    assert_eq!(
        app.store.audience_count(&q).await.unwrap(),
        expected.len() as i64
    );
    assert!(
        !expected.is_empty() && expected.len() < rows.len(),
        "{expected:?}"
    );
}
