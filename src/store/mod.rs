//! The store: one sqlx pool over SQLite (embedded default) or PostgreSQL (by URL), the
//! migrations for each, and every query rapport makes. SQL is written once for both
//! backends (`$N` placeholders, `ON CONFLICT`, `RETURNING`) wherever the dialects agree.

#[macro_use]
mod profiles;
mod audience;
mod bounces;
mod demo;
mod events;
mod library;
mod reports;
mod rights;
mod sending;
mod tokens;
mod tracking;
mod webhooks;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use audience::AudienceQuery;
pub use bounces::{DomainRow, Recorded, Returned};
pub use demo::NewEvent;
pub use events::{EventKind, EventOrigin, EventSummary, Reported};
pub use profiles::{Confirmation, ConsentMeta, OptIn};
pub use reports::{
    ClickRow, FeedbackRow, GroupBy, LinkRow, OptinDay, RateCounts, RunSummary, Totals,
};
pub use rights::PersonalData;
pub use sending::{CONFIRMATION, Claimed, RunOrigin, RunProgress, STANDING, Sent};
pub use tokens::ApiToken;
pub use tracking::{DeliveryRef, Hit, Link};
pub use webhooks::{FailingEndpoint, HOOK_RETRY_WINDOW, HookClaim, HookNote, HookRoutes, HookRow};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A failure of the store; the message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is not supported; use sqlite://FILE or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot open the database at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is not what rapport expects: {0}")]
    Corrupt(String),
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Where webhooks go (see `webhooks`), shared by every clone.
    hooks: webhooks::SharedRoutes,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Bound values per multi-row statement. Every multi-row statement numbers its values
/// `$1, $2, …` in order, which SQLite gets as anonymous `?`s (see [`positional`]): bound by
/// position, so a big statement costs no more per value than a small one, and fewer
/// statements mean fewer round trips to the database (which matter most under load).
pub(crate) const MAX_PARAMS: usize = 2_000;

/// Rows per multi-row statement for rows of `per_row` values.
pub(crate) fn rows_per_statement(per_row: usize) -> usize {
    (MAX_PARAMS / per_row).max(1)
}

/// `$first, $first+1, …` for `n` values: the body of an `IN (…)` list or of one row.
pub(crate) fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A statement for `backend`: on SQLite, one whose placeholders are exactly `$1, $2, …`
/// in order of appearance gets anonymous `?`s instead. SQLite resolves a numbered
/// parameter through a linear list of names, so binding a multi-row statement by number
/// is quadratic (a fifth of a batch insert's time); anonymous ones bind by position.
/// Other statements are returned unchanged.
pub(crate) fn positional(backend: Backend, sql: String) -> String {
    if backend != Backend::Sqlite {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut expected = 1usize;
    let mut rest = sql.as_str();
    while let Some(at) = rest.find('$') {
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        match rest[at + 1..at + 1 + digits].parse::<usize>() {
            Ok(n) if n == expected => {
                out.push_str(&rest[..at]);
                out.push('?');
                expected += 1;
                rest = &rest[at + 1 + digits..];
            }
            _ => return sql,
        }
    }
    out.push_str(rest);
    out
}

/// `($first, …), (…), …`: `rows` rows of `per_row` values each, numbered from `first`.
pub(crate) fn value_rows(first: usize, rows: usize, per_row: usize) -> String {
    shaped_rows(first, rows, &vec!["?"; per_row].join(", "))
}

/// `rows` rows of `shape`, in which each `?` stands for a value, numbered from `first`
/// across the rows: `shaped_rows(1, 2, "?, 'sent', ?")` is `($1, 'sent', $2), ($3, 'sent',
/// $4)`. (The shape holds no other `?`.)
pub(crate) fn shaped_rows(first: usize, rows: usize, shape: &str) -> String {
    use std::fmt::Write as _;
    // Every statement a send records is built here: the numbers are written straight into
    // the statement (no string per placeholder) and the shape is split once.
    let pieces: Vec<&str> = shape.split('?').collect();
    let mut out = String::with_capacity(rows * (shape.len() + 8 * pieces.len()));
    let mut n = first;
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                let _ = write!(out, "${n}");
                n += 1;
            }
            out.push_str(piece);
        }
        out.push(')');
    }
    out
}

/// Seconds since the Unix epoch: every timestamp in the store.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens (and for SQLite creates) the database at `url`. Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let mut u = format!("sqlite:{rest}");
            if !rest.contains("mode=") && !rest.contains(":memory:") {
                u.push(if rest.contains('?') { '&' } else { '?' });
                u.push_str("mode=rwc");
            }
            (Backend::Sqlite, u)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let connect_err = |source| StoreError::Connect {
            url: redact(&url),
            source,
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(connect_err)?
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
        let pool_options = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .min_connections(1)
                // A connection to a local file cannot go stale: skip the ping sqlx makes on
                // every acquire, one round trip to the connection's thread per query.
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            // A checkpoint every 10,000 WAL pages (40 MB) instead of
                            // SQLite's 1,000: a page written again before the checkpoint
                            // is copied back once, which halves the I/O of write-heavy
                            // work (clicks, sends); see BENCHMARKS.md.
                            "PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(16),
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        if backend == Backend::Sqlite {
            pool.execute("PRAGMA journal_mode = WAL;").await?;
        }
        Ok(Store {
            pool,
            backend,
            hooks: Default::default(),
        })
    }

    /// Starts a transaction, safely even when the caller is cancelled half-way.
    ///
    /// sqlx 0.8 on PostgreSQL counts a transaction as open only once the answer to `BEGIN`
    /// is read. A caller dropped while waiting for it (a visitor who closes the page while
    /// the form is stored: hyper drops the handler) leaves the connection inside a
    /// transaction that nothing ends, and the pool hands it to the next borrower: its
    /// statements run inside that transaction, hold their row locks for good (the sending
    /// worker then waits on them forever) and are lost when the connection closes (sqlx
    /// issues 2054 and 4393, fixed in sqlx 0.9.1). Here `BEGIN` runs in a task of its own,
    /// which the caller's cancellation does not stop: a transaction the caller no longer
    /// wants is dropped whole, and sqlx queues its `ROLLBACK`. SQLite's `BEGIN` was made
    /// safe in sqlx itself, so it starts in place (no hand-off to another task).
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin().await?),
            Backend::Postgres => {
                let pool = self.pool.clone();
                detached(async move { pool.begin().await }).await
            }
        }
    }

    /// Commits a transaction begun with [`Store::begin`]. On PostgreSQL the `COMMIT` runs in a
    /// task of its own, as `BEGIN` does: a caller dropped while it waits (a request whose
    /// client went away) then leaves the commit to finish rather than dropping a transaction
    /// whose `COMMIT` may already be on its way, after which sqlx queued a `ROLLBACK` (and
    /// PostgreSQL warned "there is no transaction in progress"). Once asked, it commits.
    pub(crate) async fn commit(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(tx.commit().await?),
            Backend::Postgres => detached(tx.commit()).await,
        }
    }

    /// Connects and applies the migrations: what every command and `serve` start with.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations of this backend that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                SQLITE_MIGRATIONS.run(&self.pool).await?;
                self.upgrade_status_check().await?;
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// SQLite: admits the status `lapsed` in `profiles` when the table's CHECK constraint
    /// predates it. SQLite cannot alter a constraint, so the table is rebuilt as its own
    /// documentation describes (foreign keys off, which only works outside a transaction,
    /// hence not in a migration file): a copy with the new constraint, the rows moved, the
    /// old table dropped, the copy renamed, its indexes made again, all in one transaction.
    async fn upgrade_status_check(&self) -> Result<(), StoreError> {
        const OLD: &str = "'bounced', 'complained'))";
        const NEW: &str = "'bounced', 'complained', 'lapsed'))";
        let sql: Option<String> = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'profiles'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(sql) = sql.filter(|s| s.contains(OLD)) else {
            return Ok(());
        };
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'profiles' AND sql IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let create = sql
            .replacen("CREATE TABLE profiles", "CREATE TABLE profiles_lapsed", 1)
            .replacen(OLD, NEW, 1);
        let mut conn = self.pool.acquire().await?;
        conn.execute("PRAGMA foreign_keys = OFF").await?;
        let rebuilt = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            tx.execute(create.as_str()).await?;
            let moved = tx
                .execute("INSERT INTO profiles_lapsed SELECT * FROM profiles")
                .await?
                .rows_affected();
            tx.execute("DROP TABLE profiles").await?;
            tx.execute("ALTER TABLE profiles_lapsed RENAME TO profiles")
                .await?;
            for index in &indexes {
                tx.execute(index.as_str()).await?;
            }
            tx.commit().await.map(|_| moved)
        }
        .await;
        conn.execute("PRAGMA foreign_keys = ON").await?;
        // A new database gets the old constraint from the first migration: rebuilding its
        // empty table is not news.
        match rebuilt? {
            0 => tracing::debug!("empty profiles table rebuilt to admit the status lapsed"),
            moved => tracing::info!(
                profiles = moved,
                "profiles table rebuilt to admit the status lapsed"
            ),
        }
        Ok(())
    }

    /// `sql` as it is best sent to this backend (see [`positional`]).
    pub(crate) fn positional(&self, sql: String) -> String {
        positional(self.backend, sql)
    }

    /// What a queue's claim adds to its `SELECT … LIMIT n`: on PostgreSQL concurrent
    /// claimers skip each other's rows; SQLite has one writer.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Answers when the database does (health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pool.execute("SELECT 1").await?;
        Ok(())
    }

    /// Closes every connection (on shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The installation's token-signing secret: created on first use and kept in
    /// `settings`, so links stay valid across restarts and instances.
    pub async fn signing_secret(&self) -> Result<Vec<u8>, StoreError> {
        use base64::Engine;
        let fresh: [u8; 32] = rand::random();
        let encoded = base64::engine::general_purpose::STANDARD.encode(fresh);
        sqlx::query("INSERT INTO settings (key, value) VALUES ('signing_secret', $1) ON CONFLICT (key) DO NOTHING")
            .bind(&encoded)
            .execute(&self.pool)
            .await?;
        let stored: String =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'signing_secret'")
                .fetch_one(&self.pool)
                .await?;
        base64::engine::general_purpose::STANDARD
            .decode(stored.trim())
            .map_err(|e| StoreError::Corrupt(format!("settings.signing_secret is not base64: {e}")))
    }
}

/// A new, empty PostgreSQL database on the server `RAPPORT_TEST_POSTGRES_URL` names, as a
/// URL; `None` when the variable is unset or empty. For tests, the library's and the
/// integration tests' alike: each test gets a database of its own.
#[doc(hidden)]
pub async fn fresh_postgres_url() -> Option<String> {
    use sqlx::Connection;
    let admin = std::env::var("RAPPORT_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = format!("rapport_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach RAPPORT_TEST_POSTGRES_URL {admin}: {e}"));
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin).expect("RAPPORT_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Runs `statement` (a `BEGIN` or a `COMMIT`) in a task of its own, which the caller's
/// cancellation does not stop (see [`Store::begin`] and [`Store::commit`]). The task ends
/// without an answer only when the runtime shuts down (or sqlx panics): the pool is going
/// away then, and says so.
async fn detached<T: Send + 'static>(
    statement: impl std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::spawn(statement).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(StoreError::Database(sqlx::Error::PoolClosed)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn positional_only_for_plain_sequences_on_sqlite() {
        use super::{Backend, positional};
        let seq = "INSERT INTO t VALUES ($1, $2), ($3, $4)".to_string();
        assert_eq!(
            positional(Backend::Sqlite, seq.clone()),
            "INSERT INTO t VALUES (?, ?), (?, ?)"
        );
        assert_eq!(positional(Backend::Postgres, seq.clone()), seq);
        for kept in [
            "SELECT $1, $1",
            "SELECT $2, $1",
            "SELECT $1, $3",
            "SELECT $x",
        ] {
            assert_eq!(positional(Backend::Sqlite, kept.into()), kept);
        }
        assert_eq!(positional(Backend::Sqlite, "SELECT 1".into()), "SELECT 1");
    }

    #[test]
    fn rows_are_numbered_across_the_statement() {
        use super::{shaped_rows, value_rows};
        assert_eq!(
            shaped_rows(1, 2, "?, 'sent', ?"),
            "($1, 'sent', $2), ($3, 'sent', $4)"
        );
        assert_eq!(value_rows(2, 2, 2), "($2, $3), ($4, $5)");
        assert_eq!(shaped_rows(1, 0, "?"), "");
    }

    use super::*;

    /// A store on `url` (SQLite) or on a new database of `RAPPORT_TEST_POSTGRES_URL`,
    /// migrated only up to `version`, as a rapport of that time left it; `None` for
    /// PostgreSQL without the variable.
    async fn store_at(url: Option<&str>, version: i64) -> Option<Store> {
        let url = match url {
            Some(u) => u.to_string(),
            None => fresh_postgres_url().await?,
        };
        let store = Store::connect(&url).await.expect("connect");
        let all = match store.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let older = sqlx::migrate::Migrator {
            migrations: all
                .iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        older.run(&store.pool).await.expect("older migrations");
        Some(store)
    }

    /// Migration 0014 moves the items each message carried from `library_sent` onto the
    /// delivery rows: after the upgrade, nobody is sent again an item they were sent
    /// before it, on either database.
    #[tokio::test]
    async fn items_sent_before_the_upgrade_are_still_known_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}", dir.path().join("old.db").display());
        for url in [Some(sqlite.as_str()), None] {
            let Some(store) = store_at(url, 13).await else {
                eprintln!("SKIPPED on PostgreSQL: set RAPPORT_TEST_POSTGRES_URL");
                continue;
            };
            for sql in [
                "INSERT INTO profiles (id, email, email_key, status, source, created_at, updated_at) \
                 VALUES (1, 'a@x.example', 'a@x.example', 'subscribed', 'form', 1, 1), \
                        (2, 'b@x.example', 'b@x.example', 'subscribed', 'form', 1, 1)",
                "INSERT INTO campaign_runs (id, campaign, period_key, origin, status, created_at) \
                 VALUES (101, 'newsletter', '2026-10', 'schedule', 'queued', 1), \
                        (102, 'newsletter', '2026-11', 'schedule', 'queued', 2)",
                "INSERT INTO deliveries (id, run_id, profile_id, campaign, status, next_attempt_at, sent_at, created_at) \
                 VALUES (1, 101, 1, 'newsletter', 'sent', 1, 10, 1), (2, 102, 1, 'newsletter', 'sent', 2, 20, 2), \
                        (3, 101, 2, 'newsletter', 'sent', 1, 10, 1)",
                "INSERT INTO library_sent (delivery_id, profile_id, urls, sent_at) \
                 VALUES (1, 1, 'https://l.example/a\nhttps://l.example/b', 10), \
                        (2, 1, 'https://l.example/c', 20)",
            ] {
                sqlx::query(sql).execute(&store.pool).await.expect(sql);
            }
            store.migrate().await.expect("upgrade");
            let sent = store.library_sent(&[1, 2]).await.unwrap();
            assert_eq!(
                sent.get(&1).map(Vec::as_slice),
                Some(
                    &[
                        "https://l.example/a".to_string(),
                        "https://l.example/b".to_string(),
                        "https://l.example/c".to_string()
                    ][..]
                ),
                "{:?}",
                store.backend
            );
            assert!(!sent.contains_key(&2), "a message without items has none");
            let old: Option<i64> = sqlx::query_scalar(match store.backend {
                Backend::Sqlite => "SELECT 1 FROM sqlite_master WHERE name = 'library_sent'",
                Backend::Postgres => {
                    "SELECT 1 FROM information_schema.tables WHERE table_name = 'library_sent'"
                }
            })
            .fetch_optional(&store.pool)
            .await
            .unwrap();
            assert!(old.is_none(), "the old table is gone");
        }
    }

    /// A PostgreSQL store whose pool holds one connection (so the next borrower is the one
    /// a cut-off caller left), and a second connection to watch it; `None` without
    /// `RAPPORT_TEST_POSTGRES_URL`.
    async fn one_connection_store() -> Option<(Store, sqlx::AnyConnection)> {
        use sqlx::Connection;
        let url = std::env::var("RAPPORT_TEST_POSTGRES_URL").ok()?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("connect");
        let store = Store {
            pool,
            backend: Backend::Postgres,
            hooks: Default::default(),
        };
        let watcher = sqlx::AnyConnection::connect(&url).await.expect("connect");
        Some((store, watcher))
    }

    /// Polls `fut` once (it sends its statement), blocks the thread for `wait` (the
    /// server's answer may arrive meanwhile), polls it once more and drops it, as hyper drops
    /// a handler whose client left: whether it was still pending, i.e. cut off. (A tokio
    /// timeout cannot cut this finely: its timer ticks each millisecond, longer than a
    /// local round trip.)
    async fn cut_off<F: std::future::Future>(fut: F, wait: Duration) -> bool {
        use std::task::Poll;
        let mut fut = std::pin::pin!(fut);
        let ready = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
        if ready {
            return false;
        }
        if wait.is_zero() {
            return true;
        }
        std::thread::sleep(wait);
        !std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
    }

    /// What `pg_stat_activity` says the pool's connection is doing, once it is borrowed
    /// and given back.
    async fn pool_connection_state(store: &Store, watcher: &mut sqlx::AnyConnection) -> String {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&store.pool)
            .await
            .expect("query");
        tokio::time::sleep(Duration::from_millis(5)).await;
        sqlx::query_scalar("SELECT COALESCE(state, '') FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(watcher)
            .await
            .expect("watch")
    }

    /// Whether a statement the pool's next borrower runs finds itself inside a transaction
    /// it did not begin: PostgreSQL's `now()` is when the transaction began, which is the
    /// statement's own start only where the statement is its transaction's first.
    /// (Sent as a simple query: a prepared statement's start is when its `Execute` came, after
    /// its implicit transaction began with the `Parse`.)
    async fn borrower_inside_a_transaction(store: &Store) -> bool {
        use sqlx::Row;
        sqlx::raw_sql("SELECT now() <> statement_timestamp()")
            .fetch_one(&store.pool)
            .await
            .expect("query")
            .try_get(0)
            .expect("a boolean")
    }

    /// A `BEGIN` cut off at any point (the caller's future dropped, as hyper drops a
    /// handler whose visitor hung up) leaves no transaction open for the pool's next
    /// borrower: its statements never run inside it. One connection in the pool, so the
    /// next borrower is that one. (Asked in band rather than from `pg_stat_activity`: the
    /// `BEGIN`'s own task may take the connection after the check, and the `ROLLBACK` it
    /// queues for the transaction nobody wants goes out when the connection is next used;
    /// watched from outside, that connection is "idle in transaction" meanwhile.)
    #[tokio::test]
    async fn a_cancelled_begin_leaves_no_transaction_behind() {
        let Some((store, _watcher)) = one_connection_store().await else {
            return;
        };
        let mut cut_during_begin = 0;
        for step in 0..60u64 {
            // Every other step drops it right after its first poll (mid-BEGIN).
            let cut = Duration::from_micros(step % 2 * step * 10);
            if cut_off(store.begin(), cut).await {
                cut_during_begin += 1;
            }
            assert!(
                !borrower_inside_a_transaction(&store).await,
                "after a BEGIN cut off at {cut:?} the pool's next borrower ran inside its transaction"
            );
        }
        assert!(
            cut_during_begin > 0,
            "no BEGIN was cut off; the test tested nothing"
        );
    }

    /// A commit whose caller is cut off at any point still commits, and leaves the pool's
    /// connection idle (no ROLLBACK queued behind it). (With a plain `tx.commit()` the
    /// first poll already writes `COMMIT`, so this rarely catches the old code: it guards
    /// the property, cut by cut.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_commit_still_commits() {
        let Some((store, mut watcher)) = one_connection_store().await else {
            return;
        };
        let table = format!("commit_cut_{}", std::process::id());
        sqlx::query(&format!("CREATE TABLE {table} (n BIGINT)"))
            .execute(&store.pool)
            .await
            .expect("table");
        let mut cut_during_commit = 0;
        for step in 0..60i64 {
            let mut tx = store.begin().await.expect("begin");
            sqlx::query(&format!("INSERT INTO {table} (n) VALUES ($1)"))
                .bind(step)
                .execute(&mut *tx)
                .await
                .expect("insert");
            // Every other step drops it right after its first poll (mid-COMMIT).
            let cut = Duration::from_micros(step as u64 % 2 * step as u64 * 10);
            if cut_off(store.commit(tx), cut).await {
                cut_during_commit += 1;
            }
            // The next use of the pool's one connection waits for the commit's task.
            let state = pool_connection_state(&store, &mut watcher).await;
            assert_eq!(state, "idle", "after a COMMIT cut off at {cut:?}");
            let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&mut watcher)
                .await
                .expect("count");
            assert_eq!(rows, step + 1, "the commit cut off at {cut:?} was lost");
        }
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&store.pool)
            .await
            .expect("drop");
        assert!(
            cut_during_commit > 0,
            "no COMMIT was cut off; the test tested nothing"
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://rapport.db"), "sqlite://rapport.db");
    }
}
