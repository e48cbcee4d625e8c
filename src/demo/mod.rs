//! `rapport demo`: a living programme on the first run. Synthetic small-business profiles
//! (sizes, industries, roles, ways to engage, partial answers) and six months of newsletters
//! with opens, clicks (some by link scanners), feedback and unsubscribes, so that the
//! dashboard and the exports have something to show. Every demo profile has the source
//! `demo` and an address under `demo.example`; the command refuses to run on a store that
//! holds other profiles unless forced.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::profile::{Answers, Email, Status};
use crate::store::{NewEvent, Store, StoreError, now};

/// Why no demo data was written.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "this store holds {0} profile(s) that are not demo data; demo data would mix with them in every report. Use a fresh database, or --force"
    )]
    RealData(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    pub profiles: usize,
    pub runs: usize,
    pub events: usize,
}

const FIRST: &[&str] = &[
    "Ann", "Bo", "Carla", "Dev", "Eli", "Femi", "Greta", "Hiro", "Ines", "Jon", "Kemal", "Lena",
    "Mo", "Nia", "Omar", "Pia",
];
const LAST: &[&str] = &[
    "Lee", "Berg", "Costa", "Patel", "Okafor", "Novak", "Silva", "Tanaka", "Moreau", "Smith",
    "Jensen", "Ruiz",
];
/// Comments demo readers leave after voting (stored as the product stores them).
const COMMENTS: &[&str] = &[
    "comment: The invoicing course saved me an afternoon. More like this, please.",
    "comment: Too long for me; a short checklist would do.",
    "comment: Could you cover VAT & payroll for shops under 10 people?",
    "comment: The community thread on first hires was the most useful part.",
    "comment: I run a bakery; most of this is for offices.",
    "comment: Please send it earlier in the month, before our planning meeting.",
];
const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
const SCANNER: &str = "Mozilla/5.0 (compatible; Barracuda Sentinel)";

/// Fills the store with `n` demo profiles and their history.
pub async fn fill(
    store: &Store,
    site: &crate::site::Site,
    n: usize,
    force: bool,
) -> Result<DemoSummary, DemoError> {
    let real = store.real_profile_count().await?;
    if real > 0 && !force {
        return Err(DemoError::RealData(real));
    }
    let mut rng = StdRng::seed_from_u64(2009);
    let form = &site.project.form;
    // One of the question's choices, when the person got as far (`reached`) and the form
    // asks it: a question it leaves out may have no choices at all.
    let asked = form.questions();
    let pick = |rng: &mut StdRng, q: crate::profile::Question, reached: bool| {
        let c = form.choices(q);
        (reached && asked.contains(&q) && !c.is_empty())
            .then(|| c[rng.random_range(0..c.len())].value.clone())
    };
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        let answered = rng.random_range(1..=4); // how many steps they got through
        let size = [3, 8, 15, 40, 90, 250][rng.random_range(0..6)] + rng.random_range(0..5);
        let a = Answers {
            name: Some(format!("{first} {last}")),
            employees: Some(size),
            role: pick(&mut rng, crate::profile::Question::Role, answered >= 2),
            engagement: pick(
                &mut rng,
                crate::profile::Question::Engagement,
                answered >= 2,
            ),
            industry: pick(&mut rng, crate::profile::Question::Industry, answered >= 3),
            business_need: pick(
                &mut rng,
                crate::profile::Question::BusinessNeed,
                answered >= 3,
            ),
            products: pick(&mut rng, crate::profile::Question::Products, answered >= 3)
                .map(|p| vec![p]),
            pcs: (answered >= 4).then(|| size + rng.random_range(0..10)),
            servers: (answered >= 4).then(|| rng.random_range(0..4)),
            challenge: (answered >= 4)
                .then(|| "Finding time to learn the tools we already pay for".to_string()),
            // Demo profiles are never mailed, so the library's questions stay unanswered.
            topics: None,
            frequency: None,
        };
        let email = Email::parse(&format!(
            "{}.{}{i}@{}",
            first.to_lowercase(),
            last.to_lowercase(),
            crate::profile::DEMO_DOMAIN
        ))
        .expect("valid");
        rows.push((email, a));
    }
    store
        .insert_profiles(&rows, Status::Subscribed, "demo")
        .await?;
    let mut people = Vec::with_capacity(n);
    for (email, a) in &rows {
        if let Some(p) = store.profile_by_email(email).await? {
            people.push((p.id, a.engagement.clone()));
        }
    }
    let ids: Vec<i64> = people.iter().map(|p| p.0).collect();

    // The opt-in funnel over the last 30 days.
    let today = now() / 86_400;
    let mut cursor = 0;
    for d in (0..30).rev() {
        let joined = (n / 30).max(1).min(ids.len().saturating_sub(cursor));
        let day_ids = &ids[cursor..cursor + joined];
        cursor += joined;
        let confirmed: Vec<i64> = day_ids
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.8))
            .collect();
        store
            .demo_funnel(
                today - d,
                (joined as i64) * rng.random_range(3..7),
                day_ids,
                &confirmed,
            )
            .await?;
    }

    // Six monthly newsletters.
    let links = [
        (
            "https://learn.contoso.example/courses/invoicing",
            "training",
        ),
        (
            "https://community.contoso.example/threads/first-hire",
            "community",
        ),
        (
            "https://experts.contoso.example/forums/cloud-move",
            "experts",
        ),
    ];
    let mut link_ids = Vec::new();
    for (url, tag) in links {
        link_ids.push((store.link_id("newsletter", url, tag, None).await?, tag));
    }
    let (mut runs, mut events) = (0, 0);
    for month in (1..=6).rev() {
        let at = now() - month * 30 * 86_400;
        let key = chrono::DateTime::from_timestamp(at, 0)
            .map(|t| t.format("%Y-%m-01T09:00:00Z").to_string())
            .unwrap_or_default();
        let (run_id, deliveries) = store.demo_run("newsletter", &key, at, &ids).await?;
        runs += 1;
        let mut batch = Vec::new();
        for (delivery, profile) in deliveries {
            let engagement = people
                .iter()
                .find(|p| p.0 == profile)
                .and_then(|p| p.1.as_deref());
            let keen = matches!(engagement, Some("learner") | Some("connector"));
            let ev = |kind: &'static str, hours: i64| NewEvent {
                profile_id: profile,
                kind,
                campaign: Some("newsletter"),
                run_id: Some(run_id),
                delivery_id: Some(delivery),
                at: at + hours * 3600,
                user_agent: Some(BROWSER),
                ..NewEvent::default()
            };
            batch.push(NewEvent {
                kind: "sent",
                user_agent: None,
                ..ev("sent", 0)
            });
            if rng.random_bool(0.06) {
                let (link, tag) = link_ids[rng.random_range(0..3)];
                batch.push(NewEvent {
                    link_id: Some(link),
                    tag: Some(tag),
                    automated: true,
                    user_agent: Some(SCANNER),
                    at: at + 2,
                    ..ev("click", 0)
                });
            }
            if rng.random_bool(if keen { 0.55 } else { 0.35 }) {
                batch.push(ev("open", rng.random_range(1..72)));
                if rng.random_bool(if keen { 0.35 } else { 0.15 }) {
                    let (link, tag) = match engagement {
                        Some("learner") => link_ids[0],
                        Some("connector") => link_ids[1],
                        _ => link_ids[rng.random_range(0..3)],
                    };
                    batch.push(NewEvent {
                        link_id: Some(link),
                        tag: Some(tag),
                        ..ev("click", rng.random_range(72..96))
                    });
                }
                if rng.random_bool(0.05) {
                    batch.push(NewEvent {
                        value: Some(if rng.random_bool(0.8) { "yes" } else { "no" }),
                        ..ev("feedback", 96)
                    });
                    if rng.random_bool(0.4) {
                        batch.push(NewEvent {
                            value: Some(COMMENTS[rng.random_range(0..COMMENTS.len())]),
                            ..ev("feedback", 97)
                        });
                    }
                }
            }
            if rng.random_bool(0.006) {
                batch.push(ev("unsubscribe", 100));
            }
        }
        events += batch.len();
        store.demo_events(&batch).await?;
    }
    Ok(DemoSummary {
        profiles: ids.len(),
        runs,
        events,
    })
}
