//! Per-user data for SQLite: offline messages (XEP-0160), key-value documents and keyed maps.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension};

use super::{now_unix, to_u64, write_tx, SqlResultExt, SqliteStore};
use crate::{KeyValueStore, MapStore, OfflineStore, StoreResult};

fn count_offline(conn: &Connection, host: &str, user: &str) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM offline_messages WHERE host = ?1 AND username = ?2")
        .sql()?
        .query_row((host, user), |row| row.get(0))
        .sql()?;
    to_u64(n, "offline message count")
}

#[async_trait]
impl OfflineStore for SqliteStore {
    async fn push_offline(&self, host: &str, user: &str, stanza_xml: &str) -> StoreResult<u64> {
        let (host, user, stanza) = (host.to_owned(), user.to_owned(), stanza_xml.to_owned());
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            tx.prepare_cached(
                "INSERT INTO offline_messages (host, username, stanza, stored_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .sql()?
            .execute((&host, &user, &stanza, now_unix()))
            .sql()?;
            let n = count_offline(&tx, &host, &user)?;
            tx.commit().sql()?;
            Ok(n)
        })
        .await
    }

    async fn take_offline(&self, host: &str, user: &str) -> StoreResult<Vec<String>> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| {
            // Most logins find nothing: say so without taking the write lock (a push racing
            // this check is kept for the next call, as the trait allows).
            if count_offline(conn, &host, &user)? == 0 {
                return Ok(Vec::new());
            }
            let tx = write_tx(conn)?;
            // DELETE ... RETURNING does not promise an order, so read, then delete what was
            // read (by id: anything pushed in between is kept for next time).
            let taken: Vec<(i64, String)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, stanza FROM offline_messages
                         WHERE host = ?1 AND username = ?2 ORDER BY id",
                    )
                    .sql()?;
                let rows = stmt
                    .query_map((&host, &user), |row| Ok((row.get(0)?, row.get(1)?)))
                    .sql()?;
                rows.collect::<rusqlite::Result<_>>().sql()?
            };
            if let Some((last_id, _)) = taken.last() {
                tx.prepare_cached(
                    "DELETE FROM offline_messages
                     WHERE host = ?1 AND username = ?2 AND id <= ?3",
                )
                .sql()?
                .execute((&host, &user, last_id))
                .sql()?;
            }
            tx.commit().sql()?;
            Ok(taken.into_iter().map(|(_, stanza)| stanza).collect())
        })
        .await
    }

    async fn count_offline(&self, host: &str, user: &str) -> StoreResult<u64> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| count_offline(conn, &host, &user))
            .await
    }
}

#[async_trait]
impl KeyValueStore for SqliteStore {
    async fn kv_get(&self, host: &str, user: &str, store: &str) -> StoreResult<Option<String>> {
        let (host, user, store) = (host.to_owned(), user.to_owned(), store.to_owned());
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT value FROM kv_store WHERE host = ?1 AND username = ?2 AND store = ?3",
            )
            .sql()?
            .query_row((&host, &user, &store), |row| row.get(0))
            .optional()
            .sql()
        })
        .await
    }

    async fn kv_set(
        &self,
        host: &str,
        user: &str,
        store: &str,
        value: Option<&str>,
    ) -> StoreResult<()> {
        let (host, user, store) = (host.to_owned(), user.to_owned(), store.to_owned());
        let value = value.map(str::to_owned);
        self.call(move |conn| {
            match value {
                Some(value) => conn
                    .prepare_cached(
                        "INSERT INTO kv_store (host, username, store, value) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (host, username, store) DO UPDATE SET value = excluded.value",
                    )
                    .sql()?
                    .execute((&host, &user, &store, &value))
                    .sql()?,
                None => conn
                    .prepare_cached(
                        "DELETE FROM kv_store WHERE host = ?1 AND username = ?2 AND store = ?3",
                    )
                    .sql()?
                    .execute((&host, &user, &store))
                    .sql()?,
            };
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl MapStore for SqliteStore {
    async fn map_get(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
    ) -> StoreResult<Option<String>> {
        let (host, user) = (host.to_owned(), user.to_owned());
        let (store, key) = (store.to_owned(), key.to_owned());
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT value FROM map_store
                 WHERE host = ?1 AND username = ?2 AND store = ?3 AND map_key = ?4",
            )
            .sql()?
            .query_row((&host, &user, &store, &key), |row| row.get(0))
            .optional()
            .sql()
        })
        .await
    }

    async fn map_set(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
        value: Option<&str>,
    ) -> StoreResult<()> {
        let (host, user) = (host.to_owned(), user.to_owned());
        let (store, key) = (store.to_owned(), key.to_owned());
        let value = value.map(str::to_owned);
        self.call(move |conn| {
            match value {
                Some(value) => conn
                    .prepare_cached(
                        "INSERT INTO map_store (host, username, store, map_key, value)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (host, username, store, map_key)
                         DO UPDATE SET value = excluded.value",
                    )
                    .sql()?
                    .execute((&host, &user, &store, &key, &value))
                    .sql()?,
                None => conn
                    .prepare_cached(
                        "DELETE FROM map_store
                         WHERE host = ?1 AND username = ?2 AND store = ?3 AND map_key = ?4",
                    )
                    .sql()?
                    .execute((&host, &user, &store, &key))
                    .sql()?,
            };
            Ok(())
        })
        .await
    }

    async fn map_all(
        &self,
        host: &str,
        user: &str,
        store: &str,
    ) -> StoreResult<Vec<(String, String)>> {
        let (host, user, store) = (host.to_owned(), user.to_owned(), store.to_owned());
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT map_key, value FROM map_store
                     WHERE host = ?1 AND username = ?2 AND store = ?3 ORDER BY map_key",
                )
                .sql()?;
            let rows = stmt
                .query_map((&host, &user, &store), |row| Ok((row.get(0)?, row.get(1)?)))
                .sql()?;
            rows.map(SqlResultExt::sql).collect()
        })
        .await
    }

    async fn map_clear(&self, host: &str, user: &str, store: &str) -> StoreResult<()> {
        let (host, user, store) = (host.to_owned(), user.to_owned(), store.to_owned());
        self.call(move |conn| {
            conn.prepare_cached(
                "DELETE FROM map_store WHERE host = ?1 AND username = ?2 AND store = ?3",
            )
            .sql()?
            .execute((&host, &user, &store))
            .sql()?;
            Ok(())
        })
        .await
    }
}
