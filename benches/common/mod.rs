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

/// `"a","b",…`: strings as the items of a Lua table, for wrk scripts.
pub fn lua_strings(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(",")
}
