//! Versioned schema migrations for the SQLite backend. Each file under
//! `migrations/sqlite/` is applied once, in order, and recorded in
//! `schema_migrations(version, applied_at)`; the whole run is one transaction, so a failed
//! migration leaves the database as it was.

use rusqlite::{Connection, OptionalExtension};

use super::{now_unix, write_tx, SqlResultExt};
use crate::{StoreError, StoreResult};

/// Every migration this build knows, by ascending version. Append only; never edit a
/// released one.
const MIGRATIONS: &[(u32, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_initial.sql"))];

/// Brings the schema up to date.
pub(super) fn run(conn: &mut Connection) -> StoreResult<()> {
    let tx = write_tx(conn)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )
    .sql()?;
    let latest: Option<i64> = tx
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |row| {
            row.get(0)
        })
        .optional()
        .sql()?
        .flatten();
    let current = latest.unwrap_or(0);
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > i64::from(known) {
        // Running old code on a newer schema could corrupt data it does not understand.
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this build of Starling supports \
             (up to {known}); upgrade Starling or point it at another database"
        )));
    }
    for (version, sql) in MIGRATIONS {
        if i64::from(*version) <= current {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("schema migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, now_unix()),
        )
        .sql()?;
        tracing::info!(version, "applied SQLite schema migration");
    }
    tx.commit().sql()
}

/// `(version, applied_at)` of every applied migration, oldest first.
pub(super) fn applied(conn: &mut Connection) -> StoreResult<Vec<(u32, i64)>> {
    let mut stmt = conn
        .prepare_cached("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .sql()?;
    let rows = stmt
        .query_map([], |row| Ok((row.get::<_, u32>(0)?, row.get::<_, i64>(1)?)))
        .sql()?;
    rows.map(SqlResultExt::sql).collect()
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn versions_ascend_from_one() {
        for (i, (v, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1, "migration versions must be 1, 2, 3...");
            assert!(!sql.trim().is_empty());
        }
    }
}
