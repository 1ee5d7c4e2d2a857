//! SQLite backend, the embedded default. rusqlite is synchronous, so every call runs on
//! `tokio::task::spawn_blocking` against one connection behind a `std::sync::Mutex` (never held
//! across an await). WAL journal, `synchronous=NORMAL`, foreign keys on, a busy timeout so
//! another process holding the write lock makes us wait instead of fail.
//!
//! Files: `migrations.rs` (versioned schema), `accounts.rs`, `roster.rs`, `userdata.rs`
//! (offline, key-value, map).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior};

use crate::{StoreError, StoreResult};

mod accounts;
mod migrations;
mod roster;
mod userdata;

/// How long a statement waits for another connection's lock before failing with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite database implementing every storage trait. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
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
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Applied schema migrations as `(version, applied_at unix seconds)`, oldest first.
    pub async fn schema_versions(&self) -> StoreResult<Vec<(u32, i64)>> {
        self.call(migrations::applied).await
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open (rusqlite rolls
            // back on drop), so a poisoned connection is still usable.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
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
