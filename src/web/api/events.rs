//! `POST /api/v1/events`: things people did elsewhere (a course completed in the training
//! site, a trial started in the shop), reported in batches by the company's own systems.
//! Segments test them (`did`), follow-ups start from them (`after = { event = ... }`).

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value};

use super::{ApiError, Authorized, EventsWrite, JsonBody};
use crate::store::Reported;
use crate::web::AppState;

/// The most events one request may carry.
pub const MAX_BATCH: usize = 1_000;

/// How far in the future an event's `at` may lie (clocks differ between systems).
const FUTURE_SLACK: i64 = 300;

/// The fields of one event.
const ITEM_FIELDS: &str = "email, name, at, properties";

/// `POST /api/v1/events` (`events:write`): `{"events": [{"email", "name", "at"?,
/// "properties"?}]}`, at most [`MAX_BATCH`]. The whole batch is checked first: any event at
/// fault makes a 422 naming each one (`events[3].name`) and nothing is stored. Events for
/// addresses rapport has no profile for are left out and counted; the others are stored
/// together and start the follow-ups they trigger.
#[utoipa::path(post, path = "/events", tag = "events", request_body = EventBatch,
    security(("token" = ["events:write"])),
    responses((status = 200, body = Recorded), (status = 422, body = super::ErrorBody)))]
pub async fn record(
    _: Authorized<EventsWrite>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Recorded>, ApiError> {
    let site = state.site();
    let now = crate::store::now();
    let (events, errors) = checked(&body, &site.project.events, now);
    if !errors.is_empty() {
        return Err(ApiError::invalid(
            "some events cannot be taken; nothing was stored",
            errors,
        ));
    }
    let people = events
        .iter()
        .map(|e| e.email_key.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    let recorded = state.events.record(events).await?;
    let known = recorded
        .iter()
        .map(|(id, _)| id)
        .collect::<BTreeSet<_>>()
        .len();
    let happened: Vec<(i64, crate::schedule::Happened<'_>)> = recorded
        .iter()
        .map(|(id, name)| (*id, crate::schedule::Happened::Event { name }))
        .collect();
    if crate::schedule::trigger_many(&state.store, &site, &happened).await? > 0 {
        state.worker.wake();
    }
    Ok(Json(Recorded {
        recorded: recorded.len() as u64,
        unknown_people: people - known,
    }))
}

/// Events of the batches at most written in one transaction.
const GROUP_EVENTS: usize = 10_000;

/// One request's checked batch and where its outcome goes.
type Job = (
    Vec<Reported>,
    tokio::sync::oneshot::Sender<Option<Vec<(i64, String)>>>,
);

/// The writer of reported events. On SQLite (one writer at a time, where the commit and
/// its WAL pages, not the rows, are the cost) batches that arrive while one is written go
/// to the database together, in one transaction; on PostgreSQL each request writes its own,
/// in parallel (grouping them there lost a third of the rate; see BENCHMARKS.md). Cheap to
/// clone.
#[derive(Clone)]
pub struct EventWriter {
    tx: Option<tokio::sync::mpsc::Sender<Job>>,
    store: crate::store::Store,
}

impl EventWriter {
    /// Starts the writer task on `store`.
    pub fn start(store: crate::store::Store) -> EventWriter {
        if store.backend() != crate::store::Backend::Sqlite {
            return EventWriter { tx: None, store };
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(1_024);
        let writer = store.clone();
        tokio::spawn(async move {
            let store = writer;
            while let Some(first) = rx.recv().await {
                let mut size = first.0.len();
                let mut jobs = vec![first];
                while size < GROUP_EVENTS {
                    let Ok(job) = rx.try_recv() else { break };
                    size += job.0.len();
                    jobs.push(job);
                }
                let groups: Vec<&[Reported]> = jobs.iter().map(|j| j.0.as_slice()).collect();
                match store.record_external_groups(&groups).await {
                    Ok(results) => {
                        for ((_, done), r) in jobs.into_iter().zip(results) {
                            let _ = done.send(Some(r));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, batches = jobs.len(), "reported events not stored");
                        for (_, done) in jobs {
                            let _ = done.send(None);
                        }
                    }
                }
            }
        });
        EventWriter {
            tx: Some(tx),
            store,
        }
    }

    /// Stores a checked batch (with whatever else is waiting): (profile id, name) of each
    /// event recorded; 503 when the database cannot be written.
    pub async fn record(&self, events: Vec<Reported>) -> Result<Vec<(i64, String)>, ApiError> {
        let Some(tx) = &self.tx else {
            return Ok(self.store.record_external(&events).await?);
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        tx.send((events, done))
            .await
            .map_err(|_| ApiError::unavailable())?;
        outcome
            .await
            .ok()
            .flatten()
            .ok_or_else(ApiError::unavailable)
    }
}

/// What a batch came to.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Recorded {
    /// Events stored.
    recorded: u64,
    /// Addresses in the batch rapport has no profile for (their events are left out).
    unknown_people: usize,
}

/// The body of `POST /api/v1/events`. Read event by event (so that each mistake is named
/// with its place, `events[3].name`), not by this type.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes the body for the OpenAPI document.
pub struct EventBatch {
    /// At most 1,000.
    events: Vec<EventIn>,
}

/// One thing a person did elsewhere.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes the body for the OpenAPI document.
pub struct EventIn {
    email: String,
    /// A name declared in campaigns.toml, `[events] names`.
    name: String,
    /// When it happened (RFC 3339); default: when rapport hears of it.
    #[schema(format = DateTime)]
    at: Option<String>,
    /// Anything worth keeping with it.
    #[schema(value_type = Option<Object>)]
    properties: Option<Map<String, Value>>,
}

/// The batch's events, or what is wrong with it per field.
fn checked(
    body: &Map<String, Value>,
    declared: &[String],
    now: i64,
) -> (Vec<Reported>, BTreeMap<String, String>) {
    let mut errors = BTreeMap::new();
    for key in body.keys().filter(|k| *k != "events") {
        errors.insert(
            key.clone(),
            "unknown field; the body is {\"events\": [...]}".into(),
        );
    }
    let items = match body.get("events") {
        Some(Value::Array(items)) if items.len() > MAX_BATCH => {
            errors.insert(
                "events".into(),
                format!(
                    "{} events; at most {MAX_BATCH} per request (send several requests)",
                    items.len()
                ),
            );
            return (Vec::new(), errors);
        }
        Some(Value::Array(items)) => items,
        _ => {
            errors.insert(
                "events".into(),
                format!("required: a list of up to {MAX_BATCH} events"),
            );
            return (Vec::new(), errors);
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut fault = |field: &str, message: String| {
            let at = if field.is_empty() {
                format!("events[{i}]")
            } else {
                format!("events[{i}].{field}")
            };
            errors.insert(at, message);
        };
        let Value::Object(item) = item else {
            fault("", format!("expected an object with {ITEM_FIELDS}"));
            continue;
        };
        for key in item.keys() {
            if !matches!(key.as_str(), "email" | "name" | "at" | "properties") {
                fault(key, format!("unknown field; an event has {ITEM_FIELDS}"));
            }
        }
        let email = match item.get("email").and_then(Value::as_str) {
            Some(raw) => match crate::profile::Email::parse(raw) {
                Ok(e) => Some(e),
                Err(e) => {
                    fault("email", e.to_string());
                    None
                }
            },
            None => {
                fault("email", "required: the person's address".into());
                None
            }
        };
        let name = match item.get("name").and_then(Value::as_str) {
            Some(n) if declared.iter().any(|d| d == n) => Some(n.to_string()),
            Some(n) => {
                fault("name", undeclared(n, declared));
                None
            }
            None => {
                fault("name", "required: a declared event name".into());
                None
            }
        };
        let at = match item.get("at") {
            None | Some(Value::Null) => Some(now),
            Some(Value::String(s)) => match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(t) if t.timestamp() > now + FUTURE_SLACK => {
                    fault("at", format!("{s} is in the future"));
                    None
                }
                Ok(t) => Some(t.timestamp()),
                Err(e) => {
                    fault(
                        "at",
                        format!("{s:?} is not an RFC 3339 time ({e}); write 2026-03-01T09:30:00Z"),
                    );
                    None
                }
            },
            Some(_) => {
                fault("at", "expected an RFC 3339 time as text".into());
                None
            }
        };
        let properties = match item.get("properties") {
            None | Some(Value::Null) => Some(None),
            Some(p @ Value::Object(_)) => Some(Some(p.to_string())),
            Some(_) => {
                fault("properties", "expected an object".into());
                None
            }
        };
        if let (Some(email), Some(name), Some(at), Some(properties)) = (email, name, at, properties)
        {
            out.push(Reported {
                email_key: email.key(),
                name,
                at,
                properties,
            });
        }
    }
    (out, errors)
}

fn undeclared(name: &str, declared: &[String]) -> String {
    if declared.is_empty() {
        format!(
            "\"{name}\" is not a declared event; campaigns.toml declares none ([events] names = [\"{name}\"] would)"
        )
    } else {
        format!(
            "\"{name}\" is not a declared event; declared: {}",
            declared.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_batch_is_checked_per_event() {
        let declared = vec!["course_completed".to_string()];
        let (ok, errors) = checked(
            &body(json!({"events": [
                {"email": "Ann@Example.com", "name": "course_completed"},
                {"email": "bob@example.com", "name": "course_completed",
                 "at": "2026-03-01T09:30:00+01:00", "properties": {"course": "vat"}},
            ]})),
            &declared,
            1_800_000_000,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(ok[0].email_key, "ann@example.com");
        assert_eq!(ok[0].at, 1_800_000_000);
        assert_eq!(ok[1].at, 1_772_353_800);
        assert_eq!(ok[1].properties.as_deref(), Some(r#"{"course":"vat"}"#));

        let (_, errors) = checked(
            &body(json!({"events": [
                {"email": "nope", "name": "trial_started", "at": "yesterday", "colour": 1},
                {"email": "a@example.com", "name": "course_completed", "at": "2030-01-01T00:00:00Z",
                 "properties": [1]},
                7,
            ], "extra": true})),
            &declared,
            1_800_000_000,
        );
        let keys: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "events[0].at",
                "events[0].colour",
                "events[0].email",
                "events[0].name",
                "events[1].at",
                "events[1].properties",
                "events[2]",
                "extra"
            ]
        );
        assert!(errors["events[0].name"].contains("declared: course_completed"));
        assert!(errors["events[1].at"].contains("future"));
    }

    #[test]
    fn batches_have_a_size() {
        let many: Vec<Value> = (0..=MAX_BATCH)
            .map(|i| json!({"email": format!("p{i}@example.com"), "name": "x"}))
            .collect();
        let (_, errors) = checked(&body(json!({ "events": many })), &["x".into()], 0);
        assert!(
            errors["events"].contains("1001 events; at most 1000"),
            "{errors:?}"
        );
        let (_, errors) = checked(&body(json!({})), &[], 0);
        assert!(errors["events"].starts_with("required"), "{errors:?}");
    }
}
