//! The JSON API: tokens from the command line, the token check (401, 403), and the profile
//! endpoints, on both backends over real HTTP.

mod common;

use common::TestApp;
use common::create_profile as create;
use serde_json::{Value, json};

/// A new token with `scopes`, made as an operator makes it.
fn token(app: &TestApp, name: &str, scopes: &str) -> String {
    let (code, out, err) = app.cli(&["token", "create", name, "--scopes", scopes]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = app.client.request(method, app.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON: {body}"))
    };
    (status, json, headers)
}

/// `GET path` with `token`: (status, JSON body).
async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let (status, body, _) = call(app, reqwest::Method::GET, path, Some(token)).await;
    (status, body)
}

async fn tokens_are_checked_and_profiles_served(app: TestApp) {
    use reqwest::Method;
    app.subscribed(
        "ann@example.com",
        &[("name", "Ann Lee"), ("employees", "12")],
    )
    .await;
    let crm = token(&app, "crm", "profiles:read,profiles:write");
    let reports = token(&app, "analytics", "reports:read");

    // No token, a wrong one, one without the scope.
    let (s, body, headers) =
        call(&app, Method::GET, "/api/v1/profiles/ann@example.com", None).await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (s, _) = get(&app, "/api/v1/profiles/ann@example.com", "rpt_nope").await;
    assert_eq!(s, 401);
    let (s, body) = get(&app, "/api/v1/profiles/ann@example.com", &reports).await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("profiles:read")
    );

    // Read: answers, status, segments.
    let (s, body) = get(&app, "/api/v1/profiles/Ann@Example.com", &crm).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["email"], "ann@example.com");
    assert_eq!(body["status"], "subscribed");
    assert_eq!(body["answers"]["name"], "Ann Lee");
    assert_eq!(body["answers"]["employees"], 12);
    assert!(body["segments"].is_array());
    let (s, body) = get(&app, "/api/v1/profiles/bob@example.com", &crm).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (s, body) = get(&app, "/api/v1/profiles/not-an-address", &crm).await;
    assert_eq!(s, 422, "{body}");
    assert!(body["error"]["fields"]["email"].is_string(), "{body}");
    let (s, body) = get(&app, "/api/v1/nothing/here", &crm).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Unsubscribe: recorded with the token's name as the source.
    let (s, body, _) = call(
        &app,
        Method::POST,
        "/api/v1/profiles/ann@example.com/unsubscribe",
        Some(&crm),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "unsubscribed");
    let p = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("ann@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let consents = app.store.consents(p.id).await.unwrap();
    assert!(
        consents
            .iter()
            .any(|c| c.0 == "opt_out" && c.1 == "api:crm"),
        "{consents:?}"
    );

    // `token list` shows use; a revoked token is refused.
    let (code, list, _) = app.cli(&["token", "list"]);
    assert_eq!(code, 0);
    let crm_line = list.lines().find(|l| l.starts_with("crm\t")).unwrap();
    assert!(crm_line.contains("profiles:read,profiles:write"), "{list}");
    assert!(!crm_line.ends_with("\t-\t-"), "last used is shown: {list}");
    assert!(!list.contains(&crm), "never the token itself");
    let (code, _, err) = app.cli(&["token", "create", "crm", "--scopes", "reports:read"]);
    assert_ne!(code, 0);
    assert!(err.contains("exists"), "{err}");
    let (code, _, err) = app.cli(&["token", "create", "x", "--scopes", "profiles:rw"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown scope \"profiles:rw\""), "{err}");

    // Changing answers: the form's rules, JSON errors in the API's shape.
    let patch = |body: String, content_type: &'static str| {
        let app = &app;
        let crm = crm.clone();
        async move {
            let r = app
                .client
                .patch(app.url("/api/v1/profiles/ann@example.com"))
                .bearer_auth(crm)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap(),
            )
        }
    };
    let (s, body) = patch(
        r#"{"answers": {"employees": 40, "products": ["office", "cloud"], "name": null}}"#.into(),
        "application/json",
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["answers"]["employees"], 40);
    assert_eq!(
        body["answers"]["products"],
        serde_json::json!(["office", "cloud"])
    );
    assert!(
        body["answers"]["name"].is_null(),
        "null removes an answer: {body}"
    );
    let (s, body) = patch(
        r#"{"answers": {"employees": "many", "industry": "mining", "colour": "red"}}"#.into(),
        "application/json",
    )
    .await;
    assert_eq!(s, 422, "{body}");
    let fields = &body["error"]["fields"];
    assert!(
        fields["employees"].is_string() && fields["industry"].is_string(),
        "{body}"
    );
    let (s, body) = patch(r#"{"answers": {}, "extra": 1}"#.into(), "application/json").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("malformed")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("extra"),
        "{body}"
    );
    let (s, body) = patch("{\n  \"answers\": {".into(), "application/json").await;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{body}"
    );
    let (s, _) = patch(r#"{"answers": {}}"#.into(), "text/plain").await;
    assert_eq!(s, 415);
    let big = format!(
        r#"{{"answers": {{"name": "{}"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let r = app
        .client
        .patch(app.url("/api/v1/profiles/ann@example.com"))
        .bearer_auth(crm.clone())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // The body was left unread, so the server closes this connection after answering, and
    // says so: a client must not send its next request on it (one that did saw its request
    // cut off, hyper's IncompleteMessage).
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let (s, body) = get(&app, "/api/v1/profiles/ann@example.com", &crm).await;
    assert_eq!(
        (s, body["answers"]["employees"].as_i64()),
        (200, Some(40)),
        "nothing half-written"
    );

    // A token's rate: past the burst, 429 with Retry-After.
    let mut limited = None;
    // Sequential requests: each takes a token, the bucket refills 50 a second.
    for _ in 0..2_000 {
        let (s, body, headers) = call(
            &app,
            Method::GET,
            "/api/v1/profiles/bob@example.com",
            Some(&crm),
        )
        .await;
        if s == 429 {
            limited = Some((body, headers));
            break;
        }
    }
    let (body, headers) = limited.expect("the token's rate is limited");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(headers.contains_key("retry-after"));
    let other = token(&app, "shop", "profiles:read");
    let (s, _) = get(&app, "/api/v1/profiles/bob@example.com", &other).await;
    assert_eq!(s, 404, "another token is not held back");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // Erase, then nothing is there.
    let (s, _, _) = call(
        &app,
        Method::DELETE,
        "/api/v1/profiles/ann@example.com",
        Some(&crm),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = get(&app, "/api/v1/profiles/ann@example.com", &crm).await;
    assert_eq!(s, 404);

    let (code, _, err) = app.cli(&["token", "revoke", "crm"]);
    assert_eq!(code, 0, "{err}");
    let (s, _) = get(&app, "/api/v1/profiles/ann@example.com", &crm).await;
    assert_eq!(s, 401);
    let (code, _, _) = app.cli(&["token", "revoke", "crm"]);
    assert_ne!(code, 0, "revoking twice says so");
}

/// Starts a run of `campaign` with an optional `Idempotency-Key`: (status, body).
async fn start_run(app: &TestApp, token: &str, campaign: &str, key: Option<&str>) -> (u16, Value) {
    let mut r = app
        .client
        .post(app.url(&format!("/api/v1/campaigns/{campaign}/runs")))
        .bearer_auth(token);
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

async fn campaigns_are_listed_and_runs_started_once_per_key(app: TestApp) {
    for who in ["a@example.com", "b@example.com"] {
        app.subscribed(who, &[]).await;
    }
    let ops = token(&app, "ops", "campaigns:run");
    let reader = token(&app, "reader", "profiles:read");
    let (s, body) = get(&app, "/api/v1/campaigns", &ops).await;
    assert_eq!(s, 200, "{body}");
    let news = body["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "newsletter")
        .expect("the newsletter is listed")
        .clone();
    assert_eq!(news["kind"], "newsletter");
    assert_eq!(news["last_runs"].as_array().unwrap().len(), 0);
    let (s, _) = get(&app, "/api/v1/campaigns", &reader).await;
    assert_eq!(s, 403);

    let before = app.outbox_messages().len();
    let (s, first) = start_run(&app, &ops, "newsletter", Some("order-42")).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(
        (first["recipients"].as_i64(), first["started"].as_bool()),
        (Some(2), Some(true))
    );
    // A retry with the same key: the same run, nothing new.
    let (s, again) = start_run(&app, &ops, "newsletter", Some("order-42")).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(
        (again["run"].clone(), again["started"].as_bool()),
        (first["run"].clone(), Some(false))
    );
    // Without a key, each call is a new run.
    let (s, other) = start_run(&app, &ops, "newsletter", None).await;
    assert_eq!(s, 201);
    assert_ne!(other["run"], first["run"]);
    let (s, body) = start_run(&app, &ops, "nope", None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (s, _) = start_run(&app, &ops, "newsletter", Some(&"k".repeat(300))).await;
    assert_eq!(s, 422);

    // Two runs of two people: four newsletters, not six.
    app.wait_for_messages(before + 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.outbox_messages().len(), before + 4);
    let (_, body) = get(&app, "/api/v1/campaigns", &ops).await;
    let news = body["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "newsletter")
        .unwrap()
        .clone();
    assert_eq!(news["last_runs"].as_array().unwrap().len(), 2, "{news}");

    // The response rates as JSON: the CSV's columns, counts and rates as numbers.
    let analyst = token(&app, "analyst", "reports:read");
    let (s, body) = get(&app, "/api/v1/reports/response-rates?by=run", &analyst).await;
    assert_eq!(s, 200, "{body}");
    let rows: Vec<&Value> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["campaign"] == "newsletter")
        .collect();
    assert_eq!(rows.len(), 2, "{body}");
    for r in rows {
        assert_eq!(
            (r["recipients"].as_i64(), r["delivered"].as_i64()),
            (Some(2), Some(2)),
            "{r}"
        );
        assert_eq!(r["open_rate"].as_f64(), Some(0.0), "{r}");
        assert!(r["click_to_open_rate"].is_null(), "nothing opened: {r}");
        assert!(r["run"].is_string());
    }
    let (s, body) = get(&app, "/api/v1/reports/response-rates?by=week", &analyst).await;
    assert_eq!(s, 422);
    assert!(body["error"]["fields"]["by"].is_string(), "{body}");
    let (s, body) = get(
        &app,
        "/api/v1/reports/response-rates?from=yesterday",
        &analyst,
    )
    .await;
    assert_eq!(s, 422);
    assert!(body["error"]["fields"]["from"].is_string(), "{body}");
    // A query or a path that cannot be read at all: 400 in the API's shape, not plain text.
    let (s, body) = get(
        &app,
        "/api/v1/reports/response-rates?by=run&by=campaign",
        &analyst,
    )
    .await;
    assert_eq!(
        (s, &body["error"]["code"]),
        (400, &json!("malformed")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate field `by`"),
        "{body}"
    );
    let (s, body, headers) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/campaigns",
        Some(&reader),
    )
    .await;
    assert_eq!(s, 405, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(
        body["error"]["message"],
        "/api/v1/campaigns does not take DELETE; see /api/v1/openapi.json"
    );
    assert_eq!(headers["allow"], "GET,HEAD");
    let (s, body) = get(&app, "/api/v1/profiles/%FF%FE", &reader).await;
    assert_eq!(
        (s, &body["error"]["code"]),
        (400, &json!("malformed")),
        "{body}"
    );
    let (s, _) = get(&app, "/api/v1/reports/response-rates", &ops).await;
    assert_eq!(s, 403);
}

async fn profiles_are_created_with_consent_through_the_form_rules(app: TestApp) {
    let shop = token(&app, "shop", "profiles:write");
    // Double opt-in (the default): pending, and the confirmation email goes out.
    let (s, body) = create(
        &app,
        &shop,
        json!({"email": "new@example.com", "name": "Nia", "employees": 8,
               "consent": {"source": "checkout", "ip": "203.0.113.9"}}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["answers"]["employees"], 8);
    let confirm = app
        .wait_for_mail(|m| m.to.contains("new@example.com") && m.link("/confirm/").is_some())
        .await;
    assert!(confirm.subject.contains("confirm"), "{}", confirm.subject);
    let p = app
        .store
        .profile_by_email(&rapport::profile::Email::parse("new@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let consents = app.store.consents(p.id).await.unwrap();
    assert_eq!(consents[0].0, "opt_in_requested");
    assert_eq!(consents[0].1, "api:shop:checkout");

    // Without double opt-in: subscribed at once, consent recorded, welcome sent.
    let before = app.outbox_messages().len();
    let (s, body) = create(
        &app,
        &shop,
        json!({"email": "crm@example.com", "industry": "retail",
               "consent": {"source": "signed contract"}, "double_opt_in": false}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["status"], "subscribed");
    let welcome = app
        .wait_for_new_mail(before, |m| m.to.contains("crm@example.com"))
        .await;
    assert!(
        welcome.link("/confirm/").is_none(),
        "a welcome, not a confirmation"
    );
    // Known now: 200, only the gaps filled, the status kept.
    let (s, body) = create(
        &app,
        &shop,
        json!({"email": "crm@example.com", "industry": "healthcare", "employees": 30,
               "consent": {"source": "signed contract"}, "double_opt_in": false}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["answers"]["industry"], "retail",
        "an answer is never overwritten"
    );
    assert_eq!(body["answers"]["employees"], 30, "a gap is filled");

    // The form's rules, and consent required: 422 per field, nothing stored.
    let (s, body) = create(
        &app,
        &shop,
        json!({"email": "bad@example.com", "employees": "lots", "industry": "mining"}),
    )
    .await;
    assert_eq!(s, 422, "{body}");
    let fields = &body["error"]["fields"];
    for f in ["consent", "employees", "industry"] {
        assert!(fields[f].is_string(), "{f} in {body}");
    }
    let (s, body) = create(
        &app,
        &shop,
        json!({"email": "not an address", "consent": {"source": "x"}}),
    )
    .await;
    assert_eq!(s, 422);
    assert!(body["error"]["fields"]["email"].is_string(), "{body}");
    assert!(
        app.store
            .profile_by_email(&rapport::profile::Email::parse("bad@example.com").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    // The answers may come in an object of their own, as PATCH takes them; a key given
    // both ways, or an "answers" that is not an object, is refused by name.
    let (s, body) = create(
        &app,
        &shop,
        json!({"email": "obj@example.com", "answers": {"industry": "retail", "employees": 4},
               "consent": {"source": "crm"}, "double_opt_in": false}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["answers"]["industry"], "retail");
    assert_eq!(body["answers"]["employees"], 4);
    // Refused with 422: what the error says of `field`.
    let refused = |body: Value, field: &'static str| {
        let (app, shop) = (&app, &shop);
        async move {
            let (s, body) = create(app, shop, body).await;
            assert_eq!(s, 422, "{body}");
            body["error"]["fields"][field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} in {body}"))
                .to_string()
        }
    };
    let both = json!({"email": "two@example.com", "industry": "retail",
        "answers": {"industry": "healthcare"}, "consent": {"source": "crm"}});
    assert!(refused(both, "industry").await.contains("more than once"));
    let list =
        json!({"email": "two@example.com", "answers": ["retail"], "consent": {"source": "crm"}});
    assert!(
        refused(list, "answers")
            .await
            .contains("object of answers by question key")
    );
    let unknown =
        json!({"email": "two@example.com", "colour": "red", "consent": {"source": "crm"}});
    assert!(
        refused(unknown, "_form")
            .await
            .starts_with("Fields this site does not know: colour. Accepted fields: email, ")
    );
    let reader = token(&app, "reader", "profiles:read");
    let (s, _) = create(
        &app,
        &reader,
        json!({"email": "x@example.com", "consent": {"source": "x"}}),
    )
    .await;
    assert_eq!(s, 403);
}

on_both_backends!(
    tokens_are_checked_and_profiles_served,
    campaigns_are_listed_and_runs_started_once_per_key,
    profiles_are_created_with_consent_through_the_form_rules,
    the_openapi_document_describes_every_endpoint
);

/// `GET /api/v1/openapi.json`: a valid OpenAPI 3.1 document (read by the `oas3` crate)
/// that names every endpoint of the API with its method, and names nothing else: each
/// operation it lists is routed (401 without a token, never 404 or 405).
async fn the_openapi_document_describes_every_endpoint(app: TestApp) {
    let r = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    assert_eq!(spec.servers[0].url, "/api/v1");
    let paths = spec.paths.clone().unwrap_or_default();
    let mut listed = Vec::new();
    for (path, item) in &paths {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
            ("PUT", &item.put),
        ] {
            if let Some(op) = op {
                assert!(!op.security.is_empty(), "{method} {path} names its scope");
                listed.push(format!("{method} {path}"));
            }
        }
    }
    listed.sort();
    let mut expected = vec![
        "POST /profiles",
        "GET /profiles/{email}",
        "PATCH /profiles/{email}",
        "DELETE /profiles/{email}",
        "POST /profiles/{email}/unsubscribe",
        "POST /events",
        "GET /campaigns",
        "POST /campaigns/{id}/runs",
        "GET /reports/response-rates",
    ];
    expected.sort();
    assert_eq!(listed, expected);
    for op in &listed {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path
            .replace("{email}", "ann@example.com")
            .replace("{id}", "newsletter");
        let (s, body, _) = call(
            &app,
            method.parse().unwrap(),
            &format!("/api/v1{path}"),
            None,
        )
        .await;
        assert_eq!(s, 401, "{op}: {body}");
    }
    let schemas = spec
        .components
        .as_ref()
        .unwrap()
        .schemas
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    for s in [
        "ErrorBody",
        "PersonView",
        "EventBatch",
        "NewProfile",
        "RateRows",
    ] {
        assert!(schemas.iter().any(|k| k == s), "{s} in {schemas:?}");
    }
}
