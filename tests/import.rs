//! `rapport import`: upsert by address without erasing answers or re-subscribing anyone,
//! bad rows reported as FILE:LINE and skipped, unknown columns refused before anything is
//! written. On SQLite and PostgreSQL.

mod common;

use common::TestApp;
use rapport::profile::{Email, Status};

on_both_backends!(
    imports_good_rows_and_reports_bad_ones,
    refuses_unknown_columns_and_empty_files,
    repeats_are_found_across_batches,
);

fn import(app: &TestApp, file: &std::path::Path) -> (i32, String, String) {
    app.cli(&["import", file.to_str().unwrap(), "--source", "crm"])
}

async fn profile(app: &TestApp, email: &str) -> Option<rapport::profile::Profile> {
    app.store
        .profile_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
}

async fn imports_good_rows_and_reports_bad_ones(app: TestApp) {
    app.subscribed(
        "known@example.com",
        &[("name", "Kim Known"), ("employees", "4")],
    )
    .await;
    app.subscribed("left@example.com", &[]).await;
    let left = profile(&app, "left@example.com").await.unwrap();
    app.store
        .unsubscribe(left.id, &Default::default(), &Default::default())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.csv");
    let mut csv = b"email,name,employees,industry,products\n".to_vec();
    csv.extend_from_slice(b"new@example.com,Nia New,12,retail,office;cloud\n"); // line 2
    csv.extend_from_slice(b"KNOWN@example.com,,9,,\n"); // line 3: fills employees, keeps the name
    csv.extend_from_slice(b"left@example.com,Lee Left,,,\n"); // line 4: stays unsubscribed
    csv.extend_from_slice(b"not-an-address,X,1,,\n"); // line 5
    csv.extend_from_slice(b"New@Example.com,Again,1,,\n"); // line 6: repeated address
    csv.extend_from_slice(b"short@example.com,Short\n"); // line 7: too few fields
    csv.extend_from_slice(b"bytes@example.com,\xff\xfe,1,,\n"); // line 8: not UTF-8
    csv.extend_from_slice(b"typo@example.com,Ty,3,retial,\n"); // line 9: not a choice
    csv.extend_from_slice(b"last@example.com,Lars Last,,healthcare,\n"); // line 10
    std::fs::write(&file, csv).unwrap();

    let (code, out, err) = import(&app, &file);
    assert_eq!(code, 1, "bad rows make a non-zero exit: {err}");
    let name = file.display().to_string();
    for (line, text) in [
        (5, "email"),
        (6, "already on line 2"),
        (7, "field"),
        (8, "UTF-8"),
        (9, "retial"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{name}:{line}: ")) && l.contains(text)),
            "line {line} ({text}) in:\n{out}\nstderr: {err}"
        );
    }
    assert_eq!(out.lines().count(), 5, "{out}");
    // A wrong choice names the values a list must hold, in one line.
    assert!(
        out.lines().any(|l| l == format!(
            "{name}:9: industry: \"retial\" is not a choice for \"Industry\"; the choices are retail, professional_services, manufacturing, hospitality, healthcare, construction, other; skipped"
        )),
        "{out}"
    );
    assert!(err.contains("imported 4 row(s); 5 row(s) skipped"), "{err}");

    let new = profile(&app, "new@example.com").await.unwrap();
    assert_eq!(new.status, Status::Subscribed);
    assert_eq!(
        new.answers.products,
        Some(vec!["office".to_string(), "cloud".to_string()])
    );
    let consents = app.store.consents(new.id).await.unwrap();
    assert_eq!(
        (consents[0].0.as_str(), consents[0].1.as_str()),
        ("imported", "import:crm")
    );
    let known = profile(&app, "known@example.com").await.unwrap();
    assert_eq!(
        known.answers.name.as_deref(),
        Some("Kim Known"),
        "an empty cell erases nothing"
    );
    assert_eq!(known.answers.employees, Some(9));
    assert_eq!(
        profile(&app, "left@example.com").await.unwrap().status,
        Status::Unsubscribed,
        "an import never re-subscribes"
    );
    assert!(profile(&app, "typo@example.com").await.is_none());
    assert!(
        profile(&app, "last@example.com").await.is_some(),
        "rows after bad ones are imported"
    );
}

async fn refuses_unknown_columns_and_empty_files(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("odd.csv");
    std::fs::write(&file, "email,nmae,colour\na@example.com,A,red\n").unwrap();
    let (code, _, err) = import(&app, &file);
    assert_eq!(code, 1);
    assert!(err.contains(":1: unknown column(s) nmae, colour"), "{err}");
    assert!(err.contains("Nothing was imported"));
    assert_eq!(app.store.profile_count().await.unwrap(), 0);

    // A 5 MB header name and 30 unknown columns: the message stays short.
    let huge = "z".repeat(5 << 20);
    let many: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
    std::fs::write(
        &file,
        format!("email,{huge},{}\na@example.com\n", many.join(",")),
    )
    .unwrap();
    let (code, _, err) = import(&app, &file);
    assert_eq!(code, 1);
    assert!(err.len() < 2_000, "{} bytes of error", err.len());
    assert!(
        err.contains("(5242880 characters)") && err.contains("and 21 more"),
        "{err}"
    );

    std::fs::write(&file, "").unwrap();
    let (code, _, err) = import(&app, &file);
    assert_eq!(code, 1);
    assert!(err.contains("empty"), "{err}");
    std::fs::write(&file, "name\nAnn\n").unwrap();
    let (code, _, err) = import(&app, &file);
    assert_eq!(code, 1);
    assert!(err.contains("no email column"), "{err}");
}

async fn repeats_are_found_across_batches(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.csv");
    let mut csv = String::from("email,employees\n");
    for i in 0..4500 {
        csv.push_str(&format!("p{i}@example.com,{}\n", i % 300 + 1));
    }
    csv.push_str("P7@example.com,3\n"); // line 4502, first seen on line 9, batches earlier
    std::fs::write(&file, csv).unwrap();
    let (code, out, err) = import(&app, &file);
    assert_eq!(code, 1, "{err}");
    let name = file.display().to_string();
    assert_eq!(
        out.trim(),
        format!("{name}:4502: P7@example.com is already on line 9; skipped")
    );
    assert!(
        err.contains("imported 4500 row(s); 1 row(s) skipped"),
        "{err}"
    );
    assert_eq!(app.store.profile_count().await.unwrap(), 4500);
}

/// Writes a list of about `bytes` bytes (long rows) to `file`, its addresses under `domain`.
fn write_list(file: &std::path::Path, bytes: usize, domain: &str) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    writeln!(w, "email,name,employees,challenge").unwrap();
    let challenge = "Keeping up with the tools and the paperwork while running the shop ".repeat(7);
    let (mut i, mut written) = (0u64, 0usize);
    while written < bytes {
        let line = format!(
            "person{i}@{domain},Person {i},{},{}\n",
            i % 300 + 1,
            challenge.trim()
        );
        w.write_all(line.as_bytes()).unwrap();
        written += line.len();
        i += 1;
    }
}

/// `rapport import FILE` under GNU time: its peak resident memory in KB.
fn import_peak_kb(time: &std::path::Path, database_url: &str, file: &std::path::Path) -> u64 {
    let out = std::process::Command::new(time)
        .args(["-f", "peak-rss-kb=%M"])
        .arg(env!("CARGO_BIN_EXE_rapport"))
        .args([
            "--dir",
            env!("CARGO_MANIFEST_DIR"),
            "--database-url",
            database_url,
            "import",
        ])
        .arg(file)
        .args(["--source", "big"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    err.lines()
        .find_map(|l| l.strip_prefix("peak-rss-kb="))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A 100 MB file is streamed: the import's peak memory is that of a 1 MB file's import
/// (the program, its runtime and the database's cache) plus a little, never the file.
/// Compared with a small import rather than with a fixed figure, so that a bigger binary
/// or allocator does not move the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_file_is_streamed_in_bounded_memory() {
    let time = std::path::Path::new("/usr/bin/time");
    if !time.exists() {
        assert!(
            std::env::var("CI").is_err(),
            "/usr/bin/time missing under CI: .ci/run installs it"
        );
        eprintln!("SKIPPED: /usr/bin/time (Debian package time) is needed to measure peak memory");
        return;
    }
    let app = common::spawn_app(common::Db::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.csv");
    write_list(&small, 1024 * 1024, "small.example");
    let file = dir.path().join("big.csv");
    write_list(&file, 100 * 1024 * 1024, "big.example");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size >= 100 * 1024 * 1024);
    let base = import_peak_kb(time, &app.database_url, &small);
    let kb = import_peak_kb(time, &app.database_url, &file);
    assert!(
        (kb.saturating_sub(base)) * 1024 < size / 4,
        "peak memory {kb} KB for a {size}-byte file, {base} KB for a 1 MB one"
    );
    let rows = app.store.profile_count().await.unwrap();
    assert!(rows > 150_000, "{rows}");
}
