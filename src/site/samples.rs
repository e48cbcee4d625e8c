//! Sample people for `rapport check` (see `mail::check`) and the render tests: a person with
//! no optional answers and one matching person per segment, found from the rules alone.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Site;
use crate::profile::{Answers, Email, Kind, Profile, Question, Status};
use crate::segment::{Behaviour, Facts, FieldTest, Rule, Scalar};

/// A set of behaviour facts a sample person has.
#[derive(Debug, Clone, Default)]
pub struct SampleFacts(pub HashSet<Behaviour>);

impl Facts for SampleFacts {
    fn has(&self, b: &Behaviour) -> bool {
        self.0.contains(b)
    }
}

/// A made-up person used to render templates: a label for messages, the profile, and what
/// they did.
#[derive(Debug, Clone)]
pub struct Sample {
    pub label: String,
    pub profile: Profile,
    pub facts: SampleFacts,
}

fn sample_profile(answers: Answers) -> Profile {
    Profile {
        id: 0,
        email: Email::parse("sample.person@example.com").expect("valid"),
        status: Status::Subscribed,
        answers,
        confirm_nonce: None,
        pending_nonce: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn literals(rule: &Rule, out: &mut Vec<(Question, Scalar)>, facts: &mut Vec<Behaviour>) {
    match rule {
        Rule::All(rs) | Rule::Any(rs) => rs.iter().for_each(|r| literals(r, out, facts)),
        Rule::Not(r) => literals(r, out, facts),
        Rule::Behaviour(b) => facts.push(b.clone()),
        Rule::Field { field, test } => match test {
            FieldTest::Eq(v) | FieldTest::Ne(v) => out.push((*field, v.clone())),
            FieldTest::In(vs) => vs.iter().for_each(|v| out.push((*field, v.clone()))),
            FieldTest::Lt(n) | FieldTest::Lte(n) | FieldTest::Gt(n) | FieldTest::Gte(n) => {
                for d in [-1, 0, 1] {
                    out.push((*field, Scalar::Int(n.saturating_add(d))));
                }
            }
            FieldTest::Contains(s) => out.push((*field, Scalar::Text(s.clone()))),
            FieldTest::Present(_) => {}
        },
    }
}

/// The person with no optional answers, then one matching person per segment (found by a
/// seeded search over the values the rules mention and the configured choices). Segments
/// no sample matches are returned by name.
pub fn sample_profiles(site: &Site) -> (Vec<Sample>, Vec<String>) {
    let mut samples = vec![Sample {
        label: "a person with no optional answers".into(),
        profile: sample_profile(Answers::default()),
        facts: SampleFacts::default(),
    }];
    let mut lits = Vec::new();
    let mut atoms = Vec::new();
    for seg in site.segments.iter() {
        literals(&seg.rule, &mut lits, &mut atoms);
    }
    let form = &site.project.form;
    let values = |q: Question| -> Vec<Scalar> {
        let mut v: Vec<Scalar> = lits
            .iter()
            .filter(|(f, _)| *f == q)
            .map(|(_, s)| s.clone())
            .collect();
        match q.kind() {
            Kind::Number { min, .. } => v.extend([min, 1, 10, 49, 50, 250, 1000].map(Scalar::Int)),
            Kind::Choice | Kind::MultiChoice => v.extend(
                form.choices(q)
                    .iter()
                    .map(|c| Scalar::Text(c.value.clone())),
            ),
            _ => v.push(Scalar::Text("Sample".into())),
        }
        v
    };
    let mut rng = StdRng::seed_from_u64(7);
    let mut unmatched = Vec::new();
    for seg in site.segments.iter() {
        let mut found = None;
        for attempt in 0..4000 {
            let mut a = Answers {
                name: Some("Sam Sample".into()),
                ..Answers::default()
            };
            for q in Question::ALL.into_iter().filter(|q| *q != Question::Email) {
                // Early attempts leave more questions unanswered.
                if rng.random_bool(if attempt < 50 { 0.4 } else { 0.2 }) {
                    continue;
                }
                let vs = values(q);
                if vs.is_empty() {
                    // A question with no choices (`topics` without `[topics]`): unanswerable.
                    continue;
                }
                let pick = &vs[rng.random_range(0..vs.len())];
                let v = match (q.kind(), pick) {
                    (Kind::MultiChoice, Scalar::Text(s)) => {
                        crate::profile::Value::List(vec![s.clone()])
                    }
                    (_, Scalar::Int(n)) => crate::profile::Value::Number(*n),
                    (_, Scalar::Text(s)) => crate::profile::Value::Text(s.clone()),
                    (_, Scalar::Bool(_)) => continue,
                };
                a.set(q, v);
            }
            let facts = SampleFacts(
                atoms
                    .iter()
                    .filter(|_| rng.random_bool(0.5))
                    .cloned()
                    .collect(),
            );
            let profile = sample_profile(a);
            if seg.matches(&profile, &facts) {
                found = Some(Sample {
                    label: format!("a sample person in segment \"{}\"", seg.name),
                    profile,
                    facts,
                });
                break;
            }
        }
        match found {
            Some(s) => samples.push(s),
            None => unmatched.push(seg.name.clone()),
        }
    }
    (samples, unmatched)
}
