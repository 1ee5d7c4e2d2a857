//! [`AccountStore`] for SQLite: one `accounts` row plus one `account_scram` row per SCRAM hash
//! (RFC 5802 §3 verifier: salt, iterations, StoredKey, ServerKey; never a password).

use async_trait::async_trait;
use rusqlite::{Connection, Transaction};

use super::{is_unique_violation, now_unix, read_tx, to_u64, write_tx, SqlResultExt, SqliteStore};
use crate::{AccountStore, ScramCredentials, StoreError, StoreResult, StoredCredentials};

/// SASL mechanism names used as the `mechanism` column.
const SHA1: &str = "SCRAM-SHA-1";
const SHA256: &str = "SCRAM-SHA-256";
const SHA512: &str = "SCRAM-SHA-512";

/// Per-user tables that `delete_account` empties besides `accounts` (whose credentials
/// cascade by foreign key). A new per-user table must be added here.
const USER_TABLES: &[&str] = &[
    "roster_items",
    "roster_versions",
    "roster_pending_in",
    "offline_messages",
    "kv_store",
    "map_store",
];

fn jid(host: &str, user: &str) -> String {
    format!("{user}@{host}")
}

fn account_exists(conn: &Connection, host: &str, user: &str) -> StoreResult<bool> {
    conn.prepare_cached("SELECT 1 FROM accounts WHERE host = ?1 AND username = ?2")
        .sql()?
        .exists((host, user))
        .sql()
}

/// Inserts or replaces the three credential rows.
fn write_credentials(
    tx: &Transaction<'_>,
    host: &str,
    user: &str,
    creds: &StoredCredentials,
) -> StoreResult<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO account_scram
                 (host, username, mechanism, salt, iterations, stored_key, server_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (host, username, mechanism) DO UPDATE SET
                 salt = excluded.salt, iterations = excluded.iterations,
                 stored_key = excluded.stored_key, server_key = excluded.server_key",
        )
        .sql()?;
    for (mechanism, c) in [
        (SHA1, &creds.sha1),
        (SHA256, &creds.sha256),
        (SHA512, &creds.sha512),
    ] {
        stmt.execute((
            host,
            user,
            mechanism,
            &c.salt,
            c.iterations,
            &c.stored_key,
            &c.server_key,
        ))
        .sql()?;
    }
    Ok(())
}

fn read_credentials(
    conn: &mut Connection,
    host: &str,
    user: &str,
) -> StoreResult<Option<StoredCredentials>> {
    let tx = read_tx(conn)?;
    if !account_exists(&tx, host, user)? {
        return Ok(None);
    }
    let (mut sha1, mut sha256, mut sha512) = (None, None, None);
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT mechanism, salt, iterations, stored_key, server_key
                 FROM account_scram WHERE host = ?1 AND username = ?2",
            )
            .sql()?;
        let mut rows = stmt.query((host, user)).sql()?;
        while let Some(row) = rows.next().sql()? {
            let mechanism: String = row.get(0).sql()?;
            let iterations: i64 = row.get(2).sql()?;
            let creds = ScramCredentials {
                salt: row.get(1).sql()?,
                iterations: u32::try_from(iterations).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "{mechanism} iteration count {iterations} for {}",
                        jid(host, user)
                    ))
                })?,
                stored_key: row.get(3).sql()?,
                server_key: row.get(4).sql()?,
            };
            // Rows for mechanisms this build does not know are left alone (forward compat).
            match mechanism.as_str() {
                SHA1 => sha1 = Some(creds),
                SHA256 => sha256 = Some(creds),
                SHA512 => sha512 = Some(creds),
                _ => {}
            }
        }
    }
    let missing =
        |name: &str| StoreError::Corrupt(format!("no {name} credentials for {}", jid(host, user)));
    Ok(Some(StoredCredentials {
        sha1: sha1.ok_or_else(|| missing(SHA1))?,
        sha256: sha256.ok_or_else(|| missing(SHA256))?,
        sha512: sha512.ok_or_else(|| missing(SHA512))?,
    }))
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(
        &self,
        host: &str,
        user: &str,
        creds: &StoredCredentials,
    ) -> StoreResult<()> {
        let (host, user, creds) = (host.to_owned(), user.to_owned(), creds.clone());
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            tx.prepare_cached(
                "INSERT INTO accounts (host, username, created_at) VALUES (?1, ?2, ?3)",
            )
            .sql()?
            .execute((&host, &user, now_unix()))
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(jid(&host, &user))
                } else {
                    StoreError::Backend(e.to_string())
                }
            })?;
            write_credentials(&tx, &host, &user, &creds)?;
            tx.commit().sql()
        })
        .await
    }

    async fn credentials(&self, host: &str, user: &str) -> StoreResult<Option<StoredCredentials>> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| read_credentials(conn, &host, &user))
            .await
    }

    async fn set_credentials(
        &self,
        host: &str,
        user: &str,
        creds: &StoredCredentials,
    ) -> StoreResult<()> {
        let (host, user, creds) = (host.to_owned(), user.to_owned(), creds.clone());
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            if !account_exists(&tx, &host, &user)? {
                return Err(StoreError::NotFound(jid(&host, &user)));
            }
            write_credentials(&tx, &host, &user, &creds)?;
            tx.commit().sql()
        })
        .await
    }

    async fn delete_account(&self, host: &str, user: &str) -> StoreResult<()> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let deleted = tx
                .prepare_cached("DELETE FROM accounts WHERE host = ?1 AND username = ?2")
                .sql()?
                .execute((&host, &user))
                .sql()?;
            if deleted == 0 {
                return Err(StoreError::NotFound(jid(&host, &user)));
            }
            for table in USER_TABLES {
                tx.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE host = ?1 AND username = ?2"
                ))
                .sql()?
                .execute((&host, &user))
                .sql()?;
            }
            tx.commit().sql()
        })
        .await
    }

    async fn account_exists(&self, host: &str, user: &str) -> StoreResult<bool> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| account_exists(conn, &host, &user))
            .await
    }

    async fn list_accounts(&self, host: &str) -> StoreResult<Vec<String>> {
        let host = host.to_owned();
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT username FROM accounts WHERE host = ?1 ORDER BY username")
                .sql()?;
            let rows = stmt.query_map([&host], |row| row.get(0)).sql()?;
            rows.map(SqlResultExt::sql).collect()
        })
        .await
    }

    async fn count_accounts(&self, host: &str) -> StoreResult<u64> {
        let host = host.to_owned();
        self.call(move |conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM accounts WHERE host = ?1")
                .sql()?
                .query_row([&host], |row| row.get(0))
                .sql()?;
            to_u64(n, "account count")
        })
        .await
    }
}
