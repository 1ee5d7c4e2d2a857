//! Storage for Starling: the traits the server and its modules program against (accounts with
//! SCRAM credentials, RFC 6121 rosters with XEP-0237 versions and pending-in requests, XEP-0160
//! offline messages, per-user key-value and map documents), the SQLite backend (embedded
//! default), and a conformance suite every backend must pass.
//!
//! A backend is chosen at start-up by URL with [`open`]. Every method takes `(host, user)`: the
//! account's domain and its already-normalized localpart; the store compares them byte for byte.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

pub mod cache;
pub mod conformance;
pub mod sqlite;

pub use cache::CachedStore;
pub use sqlite::SqliteStore;
pub use starling_proto::sasl::{ScramCredentials, StoredCredentials};

/// Result of every storage operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// What can go wrong in a store. Callers map these to stanza errors at the session edge
/// (typically `Conflict` → `<conflict/>`, the rest → `<internal-server-error/>`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing to create already exists (e.g. `"user@host"`).
    #[error("{0} already exists")]
    Conflict(String),
    /// The thing to change or delete does not exist (e.g. `"user@host"`).
    #[error("{0} not found")]
    NotFound(String),
    /// The database failed or is unusable (I/O, locking, unsupported URL, schema too new...).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A stored value does not decode (e.g. an unknown subscription state).
    #[error("bad stored data: {0}")]
    Corrupt(String),
}

/// Account records and their SCRAM credentials. All methods take `(host, user)`: the account's
/// domain and normalized localpart.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account; `Conflict("user@host")` if it exists.
    async fn create_account(
        &self,
        host: &str,
        user: &str,
        creds: &StoredCredentials,
    ) -> StoreResult<()>;
    /// The account's credentials, `None` if there is no such account.
    async fn credentials(&self, host: &str, user: &str) -> StoreResult<Option<StoredCredentials>>;
    /// Replaces the credentials (password change); `NotFound` if there is no account.
    async fn set_credentials(
        &self,
        host: &str,
        user: &str,
        creds: &StoredCredentials,
    ) -> StoreResult<()>;
    /// Deletes the account and ALL its data (roster, pending-in, offline, kv, map) in one
    /// transaction; `NotFound` if there is no account.
    async fn delete_account(&self, host: &str, user: &str) -> StoreResult<()>;
    async fn account_exists(&self, host: &str, user: &str) -> StoreResult<bool>;
    /// Localparts of the host's accounts, sorted (byte order).
    async fn list_accounts(&self, host: &str) -> StoreResult<Vec<String>>;
    async fn count_accounts(&self, host: &str) -> StoreResult<u64>;
}

/// Subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    /// The wire (and stored) form: `"none"`, `"to"`, `"from"`, `"both"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// Parses the wire form; `None` for anything else (including `"remove"`, which is an
    /// action, not a state).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Subscription::None),
            "to" => Some(Subscription::To),
            "from" => Some(Subscription::From),
            "both" => Some(Subscription::Both),
            _ => None,
        }
    }
}

impl std::fmt::Display for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One roster item (RFC 6121 §2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// Pending-out: we sent a subscribe and await the answer (`ask="subscribe"`).
    pub ask_out: bool,
    /// Pre-approved subscription (RFC 6121 §3.4).
    pub approved: bool,
    /// Group names, in the order given.
    pub groups: Vec<String>,
}

/// A roster as read at one moment, shared by the callers that only look at it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterSnapshot {
    /// The XEP-0237 version.
    pub version: u64,
    /// Sorted by jid (byte order).
    pub items: Vec<RosterItem>,
}

/// Rosters with XEP-0237 versions, and pending inbound subscription requests.
#[async_trait]
pub trait RosterStore: Send + Sync {
    /// `(version, items sorted by jid)`; `(0, [])` for a user who never had a roster.
    async fn roster(&self, host: &str, user: &str) -> StoreResult<(u64, Vec<RosterItem>)>;
    /// The same as [`RosterStore::roster`], shared: a cache hands out its copy instead of
    /// cloning every item.
    async fn roster_snapshot(&self, host: &str, user: &str) -> StoreResult<Arc<RosterSnapshot>> {
        let (version, items) = self.roster(host, user).await?;
        Ok(Arc::new(RosterSnapshot { version, items }))
    }
    /// The roster and the pending-in requests together, as a login reads them: one round
    /// trip where the backend can (the cache fills both from it).
    async fn roster_and_pending_in(
        &self,
        host: &str,
        user: &str,
    ) -> StoreResult<(Arc<RosterSnapshot>, Vec<(String, String)>)> {
        Ok((
            self.roster_snapshot(host, user).await?,
            self.pending_in(host, user).await?,
        ))
    }
    async fn roster_item(
        &self,
        host: &str,
        user: &str,
        jid: &str,
    ) -> StoreResult<Option<RosterItem>>;
    /// Inserts or replaces the item; bumps and returns the roster version (monotonic per user,
    /// XEP-0237), atomically with the write.
    async fn put_roster_item(&self, host: &str, user: &str, item: &RosterItem) -> StoreResult<u64>;
    /// Removes the item, bumps and returns the version; removing an absent item is Ok and
    /// returns the current version unchanged.
    async fn remove_roster_item(&self, host: &str, user: &str, jid: &str) -> StoreResult<u64>;
    async fn roster_version(&self, host: &str, user: &str) -> StoreResult<u64>;
    /// Pending-in subscription requests (RFC 6121 §3.1.3), kept apart from roster items, with
    /// the request stanza to redeliver at login: `(from bare JID, stanza XML)`, oldest first.
    async fn pending_in(&self, host: &str, user: &str) -> StoreResult<Vec<(String, String)>>;
    /// Records a request; one from the same JID is replaced, and the new one counts as the
    /// newest (it moves to the end of [`RosterStore::pending_in`]).
    async fn add_pending_in(
        &self,
        host: &str,
        user: &str,
        from: &str,
        stanza_xml: &str,
    ) -> StoreResult<()>;
    /// Forgets a request; `true` if one existed.
    async fn remove_pending_in(&self, host: &str, user: &str, from: &str) -> StoreResult<bool>;
}

/// Offline message storage (XEP-0160).
#[async_trait]
pub trait OfflineStore: Send + Sync {
    /// Stores a stanza; returns how many are now stored for the user (callers enforce limits).
    async fn push_offline(&self, host: &str, user: &str, stanza_xml: &str) -> StoreResult<u64>;
    /// Returns the stored stanzas, oldest first, and deletes them, atomically: a stanza pushed
    /// concurrently is either returned now or kept for the next call, never lost or doubled.
    async fn take_offline(&self, host: &str, user: &str) -> StoreResult<Vec<String>>;
    async fn count_offline(&self, host: &str, user: &str) -> StoreResult<u64>;
}

/// Per-user documents (vCard, last activity...), one value per `store` name.
#[async_trait]
pub trait KeyValueStore: Send + Sync {
    async fn kv_get(&self, host: &str, user: &str, store: &str) -> StoreResult<Option<String>>;
    /// Sets the value; `None` deletes it (deleting an absent value is Ok).
    async fn kv_set(
        &self,
        host: &str,
        user: &str,
        store: &str,
        value: Option<&str>,
    ) -> StoreResult<()>;
}

/// Per-user keyed documents (private XML by namespace, blocklist by JID...).
#[async_trait]
pub trait MapStore: Send + Sync {
    async fn map_get(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
    ) -> StoreResult<Option<String>>;
    /// Sets one entry; `None` deletes it (deleting an absent entry is Ok).
    async fn map_set(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
        value: Option<&str>,
    ) -> StoreResult<()>;
    /// All entries of one map, sorted by key (byte order).
    async fn map_all(
        &self,
        host: &str,
        user: &str,
        store: &str,
    ) -> StoreResult<Vec<(String, String)>>;
    /// Deletes every entry of one map.
    async fn map_clear(&self, host: &str, user: &str, store: &str) -> StoreResult<()>;
}

/// Everything the server needs from a storage backend.
pub trait Store: AccountStore + RosterStore + OfflineStore + KeyValueStore + MapStore {}
impl<T: AccountStore + RosterStore + OfflineStore + KeyValueStore + MapStore> Store for T {}

/// Opens the store named by a URL: `"sqlite://relative/or/abs/path.db"`,
/// `"sqlite:///abs/path.db"`, `"sqlite::memory:"`. Creates the file and its parent folder if
/// missing and runs migrations. Any other scheme is a `Backend` error.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    match parse_url(url)? {
        StoreUrl::SqliteMemory => Ok(Arc::new(SqliteStore::open_in_memory()?)),
        StoreUrl::SqliteFile(path) => {
            // Opening creates folders, files and runs migrations: blocking work.
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .map_err(|e| StoreError::Backend(format!("storage open task failed: {e}")))??;
            Ok(Arc::new(store))
        }
    }
}

/// Where a storage URL points.
#[derive(Debug, PartialEq, Eq)]
enum StoreUrl {
    SqliteMemory,
    SqliteFile(PathBuf),
}

const SUPPORTED: &str = "supported: sqlite://";

fn parse_url(url: &str) -> StoreResult<StoreUrl> {
    if url == "sqlite::memory:" {
        return Ok(StoreUrl::SqliteMemory);
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(StoreError::Backend(format!(
            "unsupported storage URL scheme in {url:?}: expected scheme://... ({SUPPORTED}, \
             or sqlite::memory:)"
        )));
    };
    match scheme {
        "sqlite" => {
            if rest.is_empty() {
                return Err(StoreError::Backend(format!(
                    "storage URL {url:?} names no database file (e.g. sqlite://data/starling.db)"
                )));
            }
            // Options would silently become part of the file name; refuse them instead.
            if rest.contains('?') || rest.contains('#') {
                return Err(StoreError::Backend(format!(
                    "storage URL {url:?}: sqlite URLs take no options (?...)"
                )));
            }
            // "sqlite:///abs" leaves "/abs"; "sqlite://rel" leaves "rel" (relative to the
            // working directory).
            Ok(StoreUrl::SqliteFile(PathBuf::from(rest)))
        }
        "postgres" | "postgresql" => Err(StoreError::Backend(format!(
            "unsupported storage URL scheme {scheme:?}: PostgreSQL is not built yet ({SUPPORTED})"
        ))),
        other => Err(StoreError::Backend(format!(
            "unsupported storage URL scheme {other:?} ({SUPPORTED})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_round_trips() {
        for s in [
            Subscription::None,
            Subscription::To,
            Subscription::From,
            Subscription::Both,
        ] {
            assert_eq!(Subscription::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(Subscription::parse("remove"), None);
        assert_eq!(Subscription::parse("Both"), None);
        assert_eq!(Subscription::parse(""), None);
    }

    #[test]
    fn parses_sqlite_urls() {
        assert_eq!(
            parse_url("sqlite::memory:").expect("memory"),
            StoreUrl::SqliteMemory
        );
        assert_eq!(
            parse_url("sqlite://data/starling.db").expect("relative"),
            StoreUrl::SqliteFile(PathBuf::from("data/starling.db"))
        );
        assert_eq!(
            parse_url("sqlite:///var/lib/starling/db.sqlite").expect("absolute"),
            StoreUrl::SqliteFile(PathBuf::from("/var/lib/starling/db.sqlite"))
        );
    }

    #[test]
    fn rejects_other_urls() {
        for bad in [
            "postgres://localhost/starling",
            "postgresql://u:p@localhost/starling",
            "mysql://localhost/x",
            "garbage",
            "",
            "sqlite:",
            "sqlite://",
            "sqlite://x.db?mode=ro",
            "://x",
        ] {
            match parse_url(bad) {
                Err(StoreError::Backend(msg)) => assert!(!msg.is_empty(), "{bad}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let Err(StoreError::Backend(msg)) = parse_url("postgres://localhost/db") else {
            panic!("postgres accepted");
        };
        assert!(msg.starts_with("unsupported storage URL scheme"), "{msg}");
        assert!(
            msg.contains("postgres") && msg.contains("supported: sqlite://"),
            "{msg}"
        );
        let Err(StoreError::Backend(msg)) = parse_url("garbage") else {
            panic!("garbage accepted");
        };
        assert!(msg.starts_with("unsupported storage URL scheme"), "{msg}");
    }
}
