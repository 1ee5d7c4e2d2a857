//! SQLite backend, the embedded default. rusqlite is synchronous, so one thread per store owns
//! the connection and runs the calls sent to it over a channel, in order; the caller awaits
//! the answer. This replaced a `spawn_blocking` hop per call onto a connection behind a mutex:
//! under load the hops cost more than the queries (pool lock, thread wake-ups, the blocking
//! threads queueing on the mutex; see `docs/perf-notes-login.md`), while a busy DB thread
//! takes the next call without sleeping. WAL journal, `synchronous=NORMAL`, foreign keys on,
//! a busy timeout so another process holding the write lock makes us wait instead of fail.
//!
//! Files: `migrations.rs` (versioned schema), `accounts.rs`, `roster.rs`, `userdata.rs`
//! (offline, key-value, map).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior};

use crate::{StoreError, StoreResult};

mod accounts;
mod migrations;
mod roster;
mod userdata;

/// How long a statement waits for another connection's lock before failing with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A call for the connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A SQLite database implementing every storage trait. Cloning shares the connection (and its
/// thread, which ends when the last clone is dropped).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
}

impl SqliteStore {
    /// Opens (creating the file and its parent folders if missing) and migrates a database
    /// file. Blocking: call it from `spawn_blocking` (as [`crate::open`] does) in async code.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Backend(format!("creating folder {}: {e}", parent.display()))
                })?;
            }
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// A private, empty in-memory database (for tests and throwaway servers).
    pub fn open_in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory().sql()?)
    }

    fn init(mut conn: Connection) -> StoreResult<Self> {
        conn.busy_timeout(BUSY_TIMEOUT).sql()?;
        conn.pragma_update(None, "foreign_keys", "ON").sql()?;
        // journal_mode answers with the mode in effect ("memory" for in-memory databases).
        let _mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .sql()?;
        conn.pragma_update(None, "synchronous", "NORMAL").sql()?;
        migrations::run(&mut conn)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("starling-sqlite".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    // A panicking call drops its answer (the caller sees an error); rusqlite
                    // rolls back an open transaction on drop, so the connection stays usable.
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| StoreError::Backend(format!("starting the storage thread: {e}")))?;
        Ok(SqliteStore { jobs })
    }

    /// Applied schema migrations as `(version, applied_at unix seconds)`, oldest first.
    pub async fn schema_versions(&self) -> StoreResult<Vec<(u32, i64)>> {
        self.call(migrations::applied).await
    }

    /// Runs `f` with the connection on its thread.
    async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = answer.send(f(conn));
        });
        let failed = || StoreError::Backend("storage task failed".into());
        self.jobs.send(job).map_err(|_| failed())?;
        result.await.map_err(|_| failed())?
    }
}

/// Starts a write transaction that takes the write lock up front, so two connections never
/// deadlock upgrading read locks (SQLITE_BUSY mid-transaction).
fn write_tx(conn: &mut Connection) -> StoreResult<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .sql()
}

/// Starts a read transaction: several SELECTs see one consistent snapshot.
fn read_tx(conn: &mut Connection) -> StoreResult<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Deferred)
        .sql()
}

/// Unix time in seconds, for bookkeeping columns.
fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Converts a count or version read as SQLite's i64.
fn to_u64(n: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {what}: {n}")))
}

/// Maps rusqlite errors into [`StoreError`]: a value that does not decode is `Corrupt`,
/// anything else is `Backend`.
trait SqlResultExt<T> {
    fn sql(self) -> StoreResult<T>;
}

impl<T> SqlResultExt<T> for rusqlite::Result<T> {
    fn sql(self) -> StoreResult<T> {
        self.map_err(map_err)
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match e {
        E::InvalidColumnType(..)
        | E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

/// Whether an error is a UNIQUE / PRIMARY KEY violation.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}
