//! What the benches share: the release binary they drive, their size knobs, free ports.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The crate's folder (the example project the benches run on).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/release/rapport`, which the benches measure as users run it.
pub fn release_binary() -> PathBuf {
    let bin = root().join("target/release/rapport");
    assert!(
        bin.exists(),
        "build the release binary first: cargo build --release"
    );
    bin
}

/// A size knob from the environment (`PROFILES=1000 cargo bench ...`), or its default.
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loopback port nobody listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a bench's `main` on two worker threads, as `serve` runs (the benches that host a
/// bare handler or a receiver beside it give both sides the same runtime).
pub fn block_on_two_threads<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `DATABASE_URL` when set (a PostgreSQL database to measure on), else a new SQLite file in
/// `dir`.
pub fn database_url(dir: &Path) -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()))
}

/// A plain pool on `db`, for the bench's own checks.
pub async fn pool(db: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(db).await.unwrap()
}

/// Whether any delivery has been sent yet: one row looked up through the in-flight
/// indexes, so that watching a run costs the machine nothing next to the run itself.
pub async fn any_sent(watch: &sqlx::AnyPool) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT 1 FROM deliveries WHERE status = 'sent' LIMIT 1")
        .fetch_optional(watch)
        .await
        .unwrap()
        .is_some()
}

/// Waits for run `run_id` to finish, polling every 20 ms through the in-flight indexes (a
/// row looked up, whatever the run's size), so that watching a run costs the machine
/// nothing next to the run itself: the run's own progress (a count over all its rows) is
/// read only once nothing is queued or sending. `first_sent` is called once, at the poll
/// that first sees a message accepted.
pub async fn finish_run(
    store: &rapport::store::Store,
    watch: &sqlx::AnyPool,
    run_id: i64,
    mut first_sent: impl FnMut(),
) -> rapport::store::RunProgress {
    let mut seen = false;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if !seen && any_sent(watch).await {
            seen = true;
            first_sent();
        }
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM deliveries WHERE status = 'queued') \
             OR EXISTS (SELECT 1 FROM deliveries WHERE status = 'sending')",
        )
        .fetch_optional(watch)
        .await
        .unwrap();
        if pending.is_some() {
            continue;
        }
        let p = store.run_progress(run_id).await.unwrap();
        if p.finished() {
            return p;
        }
    }
}

/// `"a","b",…`: strings as the items of a Lua table, for wrk scripts.
pub fn lua_strings(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The release `rapport serve` on the project in `dir` and database `db`, on a free
/// loopback port (returned), writing mail to `outbox`, quiet, with extra settings.
pub fn serve(
    dir: &Path,
    db: &str,
    outbox: &Path,
    vars: &[(&str, &str)],
) -> (std::process::Child, u16) {
    use std::process::{Command, Stdio};
    let port = free_port();
    let mut cmd = Command::new(release_binary());
    cmd.arg("--dir").arg(dir).args([
        "--database-url",
        db,
        "serve",
        "--bind",
        &format!("127.0.0.1:{port}"),
    ]);
    cmd.env("RAPPORT_OUTBOX_DIR", outbox)
        .env("RAPPORT_LOG", "warn")
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (cmd.spawn().unwrap(), port)
}

/// `n` subscribed people `p{i}@bench.example` with no answers.
pub async fn subscribers(store: &rapport::store::Store, n: usize) {
    people(store, n, |_| rapport::profile::Answers::default()).await;
}

/// `n` subscribed people `p{i}@bench.example` with the answers `answers(i)` gives, stored
/// 10,000 at a time.
pub async fn people(
    store: &rapport::store::Store,
    n: usize,
    answers: impl Fn(usize) -> rapport::profile::Answers,
) {
    use rapport::profile::{Email, Status};
    let mut batch = Vec::with_capacity(10_000.min(n));
    for i in 0..n {
        batch.push((
            Email::parse(&format!("p{i}@bench.example")).unwrap(),
            answers(i),
        ));
        if batch.len() == 10_000 || i + 1 == n {
            store
                .insert_profiles(&batch, Status::Subscribed, "bench")
                .await
                .unwrap();
            batch.clear();
        }
    }
}

/// Runs the release `rapport --dir DIR --database-url DB ARGS...` to its end; its standard
/// output (a failure stops the bench with the command's error output).
pub fn rapport(dir: &Path, db: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(release_binary())
        .arg("--dir")
        .arg(dir)
        .args(["--database-url", db])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rapport {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process killed (and reaped) when dropped.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Postfix's `smtp-sink` on loopback `port` (answering every message with 250), writing
/// each message into `dump` when given; ready when this returns.
pub fn sink(port: u16, dump: Option<&Path>) -> Kill {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("/usr/sbin/smtp-sink");
    cmd.args(["-u", "nobody"]);
    if let Some(d) = dump {
        cmd.arg("-d").arg(format!("{}/%M.", d.display()));
    }
    cmd.arg(format!("127.0.0.1:{port}"))
        .arg("1024")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let k = Kill(cmd.spawn().expect("smtp-sink (apt-get install postfix)"));
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    k
}

/// CPU seconds (user + system) a process has used so far: /proc/PID/stat's utime and stime,
/// in clock ticks of 1/100 s (Linux's USER_HZ).
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_fields(&format!("/proc/{pid}/stat")).1[0]
}

/// A process's threads by name (`tokio-rt-worker`, `sqlx-sqlite-wor`, …): CPU seconds of
/// each kind, and the process's minor page faults, to tell where a run's time went.
pub fn cpu_by_thread(pid: u32) -> (std::collections::BTreeMap<String, f64>, f64) {
    let mut by_name = std::collections::BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let (name, [cpu, _]) = stat_fields(&task.path().join("stat").display().to_string());
        *by_name.entry(name).or_insert(0.0) += cpu;
    }
    (by_name, stat_fields(&format!("/proc/{pid}/stat")).1[1])
}

/// The command name of a `/proc/…/stat` file, and its CPU seconds (utime + stime) and
/// minor page faults.
fn stat_fields(path: &str) -> (String, [f64; 2]) {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let (name, rest) = stat
        .split_once('(')
        .and_then(|(_, r)| r.rsplit_once(')'))
        .unwrap_or(("", ""));
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // minflt, utime and stime are fields 10, 14 and 15 of the line, 7, 11 and 12 (from 0)
    // after the name.
    (
        name.to_string(),
        [(number(11) + number(12)) / 100.0, number(7)],
    )
}
