//! [`RosterStore`] for SQLite: roster items (RFC 6121 §2), the XEP-0237 version counter bumped
//! in the same transaction as each change, and pending-in subscription requests
//! (RFC 6121 §3.1.3).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction};

use super::{now_unix, read_tx, to_u64, write_tx, SqlResultExt, SqliteStore};
use std::sync::Arc;

use crate::{RosterItem, RosterSnapshot, RosterStore, StoreError, StoreResult, Subscription};

const ITEM_COLUMNS: &str = "jid, name, subscription, ask_out, approved, groups_json";

/// A roster row as stored, decoded into a [`RosterItem`] outside the rusqlite callback so
/// decoding failures can be `Corrupt`.
struct RawItem {
    jid: String,
    name: Option<String>,
    subscription: String,
    ask_out: bool,
    approved: bool,
    groups_json: String,
}

impl RawItem {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawItem {
            jid: row.get(0)?,
            name: row.get(1)?,
            subscription: row.get(2)?,
            ask_out: row.get(3)?,
            approved: row.get(4)?,
            groups_json: row.get(5)?,
        })
    }

    fn decode(self) -> StoreResult<RosterItem> {
        let subscription = Subscription::parse(&self.subscription).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "roster item {}: subscription {:?}",
                self.jid, self.subscription
            ))
        })?;
        let groups: Vec<String> = serde_json::from_str(&self.groups_json)
            .map_err(|e| StoreError::Corrupt(format!("roster item {}: groups: {e}", self.jid)))?;
        Ok(RosterItem {
            jid: self.jid,
            name: self.name,
            subscription,
            ask_out: self.ask_out,
            approved: self.approved,
            groups,
        })
    }
}

fn current_version(conn: &Connection, host: &str, user: &str) -> StoreResult<u64> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT version FROM roster_versions WHERE host = ?1 AND username = ?2")
        .sql()?
        .query_row((host, user), |row| row.get(0))
        .optional()
        .sql()?;
    to_u64(v.unwrap_or(0), "roster version")
}

/// Increments and returns the user's roster version; call inside the write transaction.
fn bump_version(tx: &Transaction<'_>, host: &str, user: &str) -> StoreResult<u64> {
    let v: i64 = tx
        .prepare_cached(
            "INSERT INTO roster_versions (host, username, version) VALUES (?1, ?2, 1)
             ON CONFLICT (host, username) DO UPDATE SET version = version + 1
             RETURNING version",
        )
        .sql()?
        .query_row((host, user), |row| row.get(0))
        .sql()?;
    to_u64(v, "roster version")
}

/// `(version, items sorted by jid)`; call inside a read transaction.
fn read_roster(conn: &Connection, host: &str, user: &str) -> StoreResult<(u64, Vec<RosterItem>)> {
    let version = current_version(conn, host, user)?;
    let raw: Vec<RawItem> = {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ITEM_COLUMNS} FROM roster_items
                 WHERE host = ?1 AND username = ?2 ORDER BY jid"
            ))
            .sql()?;
        let rows = stmt.query_map((host, user), RawItem::from_row).sql()?;
        rows.collect::<rusqlite::Result<_>>().sql()?
    };
    let items = raw
        .into_iter()
        .map(RawItem::decode)
        .collect::<StoreResult<_>>()?;
    Ok((version, items))
}

fn read_pending_in(
    conn: &Connection,
    host: &str,
    user: &str,
) -> StoreResult<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT from_jid, stanza FROM roster_pending_in
             WHERE host = ?1 AND username = ?2 ORDER BY id",
        )
        .sql()?;
    let rows = stmt
        .query_map((host, user), |row| Ok((row.get(0)?, row.get(1)?)))
        .sql()?;
    rows.map(SqlResultExt::sql).collect()
}

#[async_trait]
impl RosterStore for SqliteStore {
    async fn roster(&self, host: &str, user: &str) -> StoreResult<(u64, Vec<RosterItem>)> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| {
            let tx = read_tx(conn)?;
            read_roster(&tx, &host, &user)
        })
        .await
    }

    async fn roster_and_pending_in(
        &self,
        host: &str,
        user: &str,
    ) -> StoreResult<(Arc<RosterSnapshot>, Vec<(String, String)>)> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| {
            let tx = read_tx(conn)?;
            let (version, items) = read_roster(&tx, &host, &user)?;
            let pending = read_pending_in(&tx, &host, &user)?;
            Ok((Arc::new(RosterSnapshot { version, items }), pending))
        })
        .await
    }

    async fn roster_item(
        &self,
        host: &str,
        user: &str,
        jid: &str,
    ) -> StoreResult<Option<RosterItem>> {
        let (host, user, jid) = (host.to_owned(), user.to_owned(), jid.to_owned());
        self.call(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {ITEM_COLUMNS} FROM roster_items
                 WHERE host = ?1 AND username = ?2 AND jid = ?3"
            ))
            .sql()?
            .query_row((&host, &user, &jid), RawItem::from_row)
            .optional()
            .sql()?
            .map(RawItem::decode)
            .transpose()
        })
        .await
    }

    async fn put_roster_item(&self, host: &str, user: &str, item: &RosterItem) -> StoreResult<u64> {
        let (host, user, item) = (host.to_owned(), user.to_owned(), item.clone());
        let groups_json = serde_json::to_string(&item.groups)
            .map_err(|e| StoreError::Backend(format!("encoding roster groups: {e}")))?;
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            tx.prepare_cached(
                "INSERT INTO roster_items
                     (host, username, jid, name, subscription, ask_out, approved, groups_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (host, username, jid) DO UPDATE SET
                     name = excluded.name, subscription = excluded.subscription,
                     ask_out = excluded.ask_out, approved = excluded.approved,
                     groups_json = excluded.groups_json",
            )
            .sql()?
            .execute((
                &host,
                &user,
                &item.jid,
                &item.name,
                item.subscription.as_str(),
                item.ask_out,
                item.approved,
                &groups_json,
            ))
            .sql()?;
            let version = bump_version(&tx, &host, &user)?;
            tx.commit().sql()?;
            Ok(version)
        })
        .await
    }

    async fn remove_roster_item(&self, host: &str, user: &str, jid: &str) -> StoreResult<u64> {
        let (host, user, jid) = (host.to_owned(), user.to_owned(), jid.to_owned());
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let removed = tx
                .prepare_cached(
                    "DELETE FROM roster_items WHERE host = ?1 AND username = ?2 AND jid = ?3",
                )
                .sql()?
                .execute((&host, &user, &jid))
                .sql()?;
            // Nothing changed, so the version must not move (clients would refetch for nothing).
            let version = if removed == 0 {
                current_version(&tx, &host, &user)?
            } else {
                bump_version(&tx, &host, &user)?
            };
            tx.commit().sql()?;
            Ok(version)
        })
        .await
    }

    async fn roster_version(&self, host: &str, user: &str) -> StoreResult<u64> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| current_version(conn, &host, &user))
            .await
    }

    async fn pending_in(&self, host: &str, user: &str) -> StoreResult<Vec<(String, String)>> {
        let (host, user) = (host.to_owned(), user.to_owned());
        self.call(move |conn| read_pending_in(conn, &host, &user))
            .await
    }

    async fn add_pending_in(
        &self,
        host: &str,
        user: &str,
        from: &str,
        stanza_xml: &str,
    ) -> StoreResult<()> {
        let (host, user) = (host.to_owned(), user.to_owned());
        let (from, stanza) = (from.to_owned(), stanza_xml.to_owned());
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            // Delete + insert (not upsert) so the replacement gets a new id: it is the newest.
            tx.prepare_cached(
                "DELETE FROM roster_pending_in WHERE host = ?1 AND username = ?2 AND from_jid = ?3",
            )
            .sql()?
            .execute((&host, &user, &from))
            .sql()?;
            tx.prepare_cached(
                "INSERT INTO roster_pending_in (host, username, from_jid, stanza, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .sql()?
            .execute((&host, &user, &from, &stanza, now_unix()))
            .sql()?;
            tx.commit().sql()
        })
        .await
    }

    async fn remove_pending_in(&self, host: &str, user: &str, from: &str) -> StoreResult<bool> {
        let (host, user, from) = (host.to_owned(), user.to_owned(), from.to_owned());
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM roster_pending_in
                     WHERE host = ?1 AND username = ?2 AND from_jid = ?3",
                )
                .sql()?
                .execute((&host, &user, &from))
                .sql()?;
            Ok(n > 0)
        })
        .await
    }
}
