//! A read cache in front of any [`Store`], for what every login and presence broadcast reads
//! again: rosters (RFC 6121 §2, with their XEP-0237 version), pending-in requests (§3.1.3),
//! whether an account exists, whether it has offline messages (XEP-0160), and keyed maps
//! (the XEP-0191 blocklist). A login used to cost eight store round trips; with this one it
//! costs about four, and a second login of the same account two (see
//! `docs/perf-notes-login.md`).
//!
//! Coherence: every write goes through this wrapper, which drops what it changed after the
//! inner write returns. A fill never installs a value read before a concurrent write: each
//! shard has a generation, bumped by every write to it; a fill notes the generation before
//! reading and installs only if it has not moved (else the next read simply misses). The
//! server must be the only writer of the database while it runs (the admin CLI writes to the
//! store only when the server is stopped).
//!
//! Bounded: entries are weighed (one per account, plus its roster items, pending requests and
//! map entries); a full shard evicts arbitrary entries. Absence is never cached, so mail to
//! random addresses cannot fill it.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::{
    AccountStore, KeyValueStore, MapStore, OfflineStore, RosterItem, RosterSnapshot, RosterStore,
    Store, StoreResult, StoredCredentials,
};

const SHARDS: usize = 64;
/// Total weight the cache may hold: about 256k roster items (some tens of MB) at most.
const MAX_WEIGHT: usize = 1 << 18;

type Map = Arc<Vec<(String, String)>>;

/// What is known about one account.
#[derive(Default)]
struct Entry {
    /// The account exists (only ever cached as true).
    exists: bool,
    roster: Option<Arc<RosterSnapshot>>,
    pending_in: Option<Arc<Vec<(String, String)>>>,
    /// No offline message is stored.
    offline_empty: bool,
    /// `map_all` results by store name.
    maps: Vec<(String, Map)>,
}

impl Entry {
    fn weight(&self) -> usize {
        1 + self.roster.as_ref().map_or(0, |r| r.items.len())
            + self.pending_in.as_ref().map_or(0, |p| p.len())
            + self.maps.iter().map(|(_, m)| 1 + m.len()).sum::<usize>()
    }
}

#[derive(Default)]
struct Shard {
    generation: u64,
    weight: usize,
    entries: HashMap<String, Entry>,
}

impl Shard {
    /// Applies `f` to the account's entry (created if missing), keeping the weight right and
    /// the shard within its budget; empty entries are removed.
    fn update(&mut self, key: &str, f: impl FnOnce(&mut Entry)) {
        if !self.entries.contains_key(key) {
            self.entries.insert(key.to_owned(), Entry::default());
            self.weight += 1;
        }
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let before = entry.weight();
        f(entry);
        let after = entry.weight();
        let empty = !entry.exists
            && entry.roster.is_none()
            && entry.pending_in.is_none()
            && !entry.offline_empty
            && entry.maps.is_empty();
        self.weight = self.weight + after - before;
        if empty {
            self.entries.remove(key);
            self.weight -= 1;
        }
        self.evict(key);
    }

    /// Drops arbitrary entries (never `keep`) until the shard is within budget.
    fn evict(&mut self, keep: &str) {
        const BUDGET: usize = MAX_WEIGHT / SHARDS;
        while self.weight > BUDGET {
            let Some(victim) = self.entries.keys().find(|k| *k != keep).cloned() else {
                return;
            };
            if let Some(e) = self.entries.remove(&victim) {
                self.weight -= e.weight();
            }
        }
    }

    /// A write: fills that started before it must not install what they read.
    fn changed(&mut self, key: &str, f: impl FnOnce(&mut Entry)) {
        self.generation += 1;
        if self.entries.contains_key(key) {
            self.update(key, f);
        }
    }
}

/// The caching wrapper; see the module documentation.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    shards: Box<[Mutex<Shard>]>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CachedStore {
            inner,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// `store` wrapped in a cache (the server's view of its database).
    pub fn wrap(store: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(CachedStore::new(store))
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() % SHARDS as u64) as usize]
    }

    /// Reads something cached about the account.
    fn get<T>(&self, key: &str, f: impl FnOnce(&Entry) -> Option<T>) -> Option<T> {
        self.shard(key).lock().entries.get(key).and_then(f)
    }

    fn generation(&self, key: &str) -> u64 {
        self.shard(key).lock().generation
    }

    /// Installs what a read found, unless a write happened since `generation`.
    fn fill(&self, key: &str, generation: u64, f: impl FnOnce(&mut Entry)) {
        let mut shard = self.shard(key).lock();
        if shard.generation == generation {
            shard.update(key, f);
        }
    }

    /// Records a write to the account.
    fn changed(&self, key: &str, f: impl FnOnce(&mut Entry)) {
        self.shard(key).lock().changed(key, f);
    }
}

fn key(host: &str, user: &str) -> String {
    // '/' cannot appear in a domain, so (host, user) pairs never collide.
    let mut k = String::with_capacity(host.len() + 1 + user.len());
    k.push_str(host);
    k.push('/');
    k.push_str(user);
    k
}

#[async_trait]
impl AccountStore for CachedStore {
    async fn create_account(
        &self,
        host: &str,
        user: &str,
        creds: &StoredCredentials,
    ) -> StoreResult<()> {
        let k = key(host, user);
        let r = self.inner.create_account(host, user, creds).await;
        // A new account starts empty; whatever was cached under its name is gone.
        self.changed(&k, |e| *e = Entry::default());
        r
    }

    async fn credentials(&self, host: &str, user: &str) -> StoreResult<Option<StoredCredentials>> {
        let k = key(host, user);
        let generation = self.generation(&k);
        let creds = self.inner.credentials(host, user).await?;
        if creds.is_some() {
            // Binding right after authentication asks whether the account still exists.
            self.fill(&k, generation, |e| e.exists = true);
        }
        Ok(creds)
    }

    async fn set_credentials(
        &self,
        host: &str,
        user: &str,
        creds: &StoredCredentials,
    ) -> StoreResult<()> {
        self.inner.set_credentials(host, user, creds).await
    }

    async fn delete_account(&self, host: &str, user: &str) -> StoreResult<()> {
        let k = key(host, user);
        let r = self.inner.delete_account(host, user).await;
        self.changed(&k, |e| *e = Entry::default());
        r
    }

    async fn account_exists(&self, host: &str, user: &str) -> StoreResult<bool> {
        let k = key(host, user);
        if self.get(&k, |e| e.exists.then_some(())).is_some() {
            return Ok(true);
        }
        let generation = self.generation(&k);
        let exists = self.inner.account_exists(host, user).await?;
        if exists {
            self.fill(&k, generation, |e| e.exists = true);
        }
        Ok(exists)
    }

    async fn list_accounts(&self, host: &str) -> StoreResult<Vec<String>> {
        self.inner.list_accounts(host).await
    }

    async fn count_accounts(&self, host: &str) -> StoreResult<u64> {
        self.inner.count_accounts(host).await
    }
}

#[async_trait]
impl RosterStore for CachedStore {
    async fn roster(&self, host: &str, user: &str) -> StoreResult<(u64, Vec<RosterItem>)> {
        let r = self.roster_snapshot(host, user).await?;
        Ok((r.version, r.items.clone()))
    }

    async fn roster_snapshot(&self, host: &str, user: &str) -> StoreResult<Arc<RosterSnapshot>> {
        let k = key(host, user);
        if let Some(r) = self.get(&k, |e| e.roster.clone()) {
            return Ok(r);
        }
        // A roster is read at login, where the pending-in requests are read next: both in one
        // round trip.
        let generation = self.generation(&k);
        let (r, pending) = self.inner.roster_and_pending_in(host, user).await?;
        self.fill(&k, generation, |e| {
            e.roster = Some(r.clone());
            e.pending_in = Some(Arc::new(pending));
        });
        Ok(r)
    }

    async fn roster_item(
        &self,
        host: &str,
        user: &str,
        jid: &str,
    ) -> StoreResult<Option<RosterItem>> {
        let k = key(host, user);
        if let Some(r) = self.get(&k, |e| e.roster.clone()) {
            // Items are sorted by jid (byte order).
            return Ok(r
                .items
                .binary_search_by(|i| i.jid.as_str().cmp(jid))
                .ok()
                .map(|i| r.items[i].clone()));
        }
        self.inner.roster_item(host, user, jid).await
    }

    async fn put_roster_item(&self, host: &str, user: &str, item: &RosterItem) -> StoreResult<u64> {
        let k = key(host, user);
        let r = self.inner.put_roster_item(host, user, item).await;
        self.changed(&k, |e| e.roster = None);
        r
    }

    async fn remove_roster_item(&self, host: &str, user: &str, jid: &str) -> StoreResult<u64> {
        let k = key(host, user);
        let r = self.inner.remove_roster_item(host, user, jid).await;
        self.changed(&k, |e| e.roster = None);
        r
    }

    async fn roster_version(&self, host: &str, user: &str) -> StoreResult<u64> {
        let k = key(host, user);
        if let Some(v) = self.get(&k, |e| e.roster.as_ref().map(|r| r.version)) {
            return Ok(v);
        }
        self.inner.roster_version(host, user).await
    }

    async fn pending_in(&self, host: &str, user: &str) -> StoreResult<Vec<(String, String)>> {
        let k = key(host, user);
        if let Some(p) = self.get(&k, |e| e.pending_in.clone()) {
            return Ok(p.as_ref().clone());
        }
        let generation = self.generation(&k);
        let p = self.inner.pending_in(host, user).await?;
        let shared = Arc::new(p.clone());
        self.fill(&k, generation, |e| e.pending_in = Some(shared));
        Ok(p)
    }

    async fn add_pending_in(
        &self,
        host: &str,
        user: &str,
        from: &str,
        stanza_xml: &str,
    ) -> StoreResult<()> {
        let k = key(host, user);
        let r = self
            .inner
            .add_pending_in(host, user, from, stanza_xml)
            .await;
        self.changed(&k, |e| e.pending_in = None);
        r
    }

    async fn remove_pending_in(&self, host: &str, user: &str, from: &str) -> StoreResult<bool> {
        let k = key(host, user);
        let r = self.inner.remove_pending_in(host, user, from).await;
        self.changed(&k, |e| e.pending_in = None);
        r
    }
}

#[async_trait]
impl OfflineStore for CachedStore {
    async fn push_offline(&self, host: &str, user: &str, stanza_xml: &str) -> StoreResult<u64> {
        let k = key(host, user);
        let r = self.inner.push_offline(host, user, stanza_xml).await;
        self.changed(&k, |e| e.offline_empty = false);
        r
    }

    async fn take_offline(&self, host: &str, user: &str) -> StoreResult<Vec<String>> {
        let k = key(host, user);
        if self.get(&k, |e| e.offline_empty.then_some(())).is_some() {
            return Ok(Vec::new());
        }
        let generation = self.generation(&k);
        let taken = self.inner.take_offline(host, user).await?;
        // Everything stored was taken: empty, unless a push came meanwhile (which moved the
        // generation).
        self.fill(&k, generation, |e| e.offline_empty = true);
        Ok(taken)
    }

    async fn count_offline(&self, host: &str, user: &str) -> StoreResult<u64> {
        let k = key(host, user);
        if self.get(&k, |e| e.offline_empty.then_some(())).is_some() {
            return Ok(0);
        }
        let generation = self.generation(&k);
        let n = self.inner.count_offline(host, user).await?;
        if n == 0 {
            self.fill(&k, generation, |e| e.offline_empty = true);
        }
        Ok(n)
    }
}

#[async_trait]
impl KeyValueStore for CachedStore {
    async fn kv_get(&self, host: &str, user: &str, store: &str) -> StoreResult<Option<String>> {
        self.inner.kv_get(host, user, store).await
    }

    async fn kv_set(
        &self,
        host: &str,
        user: &str,
        store: &str,
        value: Option<&str>,
    ) -> StoreResult<()> {
        self.inner.kv_set(host, user, store, value).await
    }
}

fn cached_map(e: &Entry, store: &str) -> Option<Map> {
    e.maps
        .iter()
        .find(|(name, _)| name == store)
        .map(|(_, m)| m.clone())
}

#[async_trait]
impl MapStore for CachedStore {
    async fn map_get(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key_: &str,
    ) -> StoreResult<Option<String>> {
        let k = key(host, user);
        if let Some(m) = self.get(&k, |e| cached_map(e, store)) {
            // map_all is sorted by key (byte order).
            return Ok(m
                .binary_search_by(|(mk, _)| mk.as_str().cmp(key_))
                .ok()
                .map(|i| m[i].1.clone()));
        }
        self.inner.map_get(host, user, store, key_).await
    }

    async fn map_set(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key_: &str,
        value: Option<&str>,
    ) -> StoreResult<()> {
        let k = key(host, user);
        let r = self.inner.map_set(host, user, store, key_, value).await;
        self.changed(&k, |e| e.maps.retain(|(name, _)| name != store));
        r
    }

    async fn map_all(
        &self,
        host: &str,
        user: &str,
        store: &str,
    ) -> StoreResult<Vec<(String, String)>> {
        let k = key(host, user);
        if let Some(m) = self.get(&k, |e| cached_map(e, store)) {
            return Ok(m.as_ref().clone());
        }
        let generation = self.generation(&k);
        let all = self.inner.map_all(host, user, store).await?;
        let shared = Arc::new(all.clone());
        self.fill(&k, generation, |e| {
            e.maps.retain(|(name, _)| name != store);
            e.maps.push((store.to_owned(), shared));
        });
        Ok(all)
    }

    async fn map_clear(&self, host: &str, user: &str, store: &str) -> StoreResult<()> {
        let k = key(host, user);
        let r = self.inner.map_clear(host, user, store).await;
        self.changed(&k, |e| e.maps.retain(|(name, _)| name != store));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{item, sample_credentials};
    use crate::{SqliteStore, Subscription};

    const H: &str = "cache.example";

    fn store() -> CachedStore {
        CachedStore::new(Arc::new(
            SqliteStore::open_in_memory().expect("in-memory store"),
        ))
    }

    fn cached(s: &CachedStore, user: &str) -> bool {
        s.get(&key(H, user), |e| e.roster.clone()).is_some()
    }

    #[tokio::test]
    async fn roster_writes_are_seen_after_a_cached_read() {
        let s = store();
        s.create_account(H, "u", &sample_credentials(1))
            .await
            .expect("create");
        assert_eq!(s.roster(H, "u").await.expect("roster"), (0, vec![]));
        assert!(cached(&s, "u"));
        // Roster push (roster set, subscription change): put drops the cached roster.
        let a = item("a@x", Subscription::To);
        let v = s.put_roster_item(H, "u", &a).await.expect("put");
        assert!(!cached(&s, "u"));
        assert_eq!(
            s.roster(H, "u").await.expect("roster"),
            (v, vec![a.clone()])
        );
        assert_eq!(s.roster_item(H, "u", "a@x").await.expect("item"), Some(a));
        assert_eq!(s.roster_item(H, "u", "b@x").await.expect("item"), None);
        assert_eq!(s.roster_version(H, "u").await.expect("ver"), v);
        // Subscription state change on the same item.
        let both = item("a@x", Subscription::Both);
        s.put_roster_item(H, "u", &both).await.expect("put");
        assert_eq!(
            s.roster_item(H, "u", "a@x").await.expect("item"),
            Some(both)
        );
        // Removal.
        let v = s.remove_roster_item(H, "u", "a@x").await.expect("remove");
        assert_eq!(
            s.roster_snapshot(H, "u").await.expect("roster").items,
            vec![]
        );
        assert_eq!(s.roster_version(H, "u").await.expect("ver"), v);
    }

    #[tokio::test]
    async fn pending_in_changes_are_seen() {
        let s = store();
        // A roster read fills the pending-in requests too (one round trip at login).
        s.roster(H, "u").await.expect("roster");
        assert!(s.get(&key(H, "u"), |e| e.pending_in.clone()).is_some());
        assert!(s.pending_in(H, "u").await.expect("pending").is_empty());
        s.add_pending_in(H, "u", "a@x", "<presence/>")
            .await
            .expect("add");
        assert_eq!(
            s.pending_in(H, "u").await.expect("pending"),
            vec![("a@x".to_owned(), "<presence/>".to_owned())]
        );
        assert!(s.remove_pending_in(H, "u", "a@x").await.expect("remove"));
        assert!(s.pending_in(H, "u").await.expect("pending").is_empty());
    }

    #[tokio::test]
    async fn account_removal_forgets_everything() {
        let s = store();
        s.create_account(H, "u", &sample_credentials(1))
            .await
            .expect("create");
        s.put_roster_item(H, "u", &item("a@x", Subscription::Both))
            .await
            .expect("put");
        s.map_set(H, "u", "blocklist", "b@x", Some(""))
            .await
            .expect("block");
        assert!(s.credentials(H, "u").await.expect("creds").is_some());
        assert!(s.account_exists(H, "u").await.expect("exists"));
        assert_eq!(s.roster(H, "u").await.expect("roster").1.len(), 1);
        assert_eq!(s.map_all(H, "u", "blocklist").await.expect("map").len(), 1);
        s.delete_account(H, "u").await.expect("delete");
        assert!(!s.account_exists(H, "u").await.expect("exists"));
        assert_eq!(s.roster(H, "u").await.expect("roster"), (0, vec![]));
        assert!(s
            .map_all(H, "u", "blocklist")
            .await
            .expect("map")
            .is_empty());
        // Absence is not cached: a new account of that name is seen at once.
        s.create_account(H, "u", &sample_credentials(2))
            .await
            .expect("recreate");
        assert!(s.account_exists(H, "u").await.expect("exists"));
    }

    #[tokio::test]
    async fn blocklist_changes_are_seen() {
        let s = store();
        assert!(s
            .map_all(H, "u", "blocklist")
            .await
            .expect("map")
            .is_empty());
        s.map_set(H, "u", "blocklist", "b@x", Some(""))
            .await
            .expect("block");
        assert_eq!(
            s.map_all(H, "u", "blocklist").await.expect("map"),
            vec![("b@x".to_owned(), String::new())]
        );
        assert_eq!(
            s.map_get(H, "u", "blocklist", "b@x").await.expect("get"),
            Some(String::new())
        );
        // Another map of the same account is cached apart.
        assert!(s.map_all(H, "u", "private").await.expect("map").is_empty());
        s.map_set(H, "u", "blocklist", "b@x", None)
            .await
            .expect("unblock");
        assert_eq!(
            s.map_get(H, "u", "blocklist", "b@x").await.expect("get"),
            None
        );
        s.map_set(H, "u", "blocklist", "c@x", Some(""))
            .await
            .expect("block");
        s.map_clear(H, "u", "blocklist").await.expect("clear");
        assert!(s
            .map_all(H, "u", "blocklist")
            .await
            .expect("map")
            .is_empty());
    }

    #[tokio::test]
    async fn offline_pushes_after_an_empty_take_are_delivered() {
        let s = store();
        assert!(s.take_offline(H, "u").await.expect("take").is_empty());
        assert_eq!(s.count_offline(H, "u").await.expect("count"), 0);
        assert_eq!(s.push_offline(H, "u", "<message/>").await.expect("push"), 1);
        assert_eq!(s.count_offline(H, "u").await.expect("count"), 1);
        assert_eq!(
            s.take_offline(H, "u").await.expect("take"),
            vec!["<message/>".to_owned()]
        );
        assert!(s.take_offline(H, "u").await.expect("take").is_empty());
    }

    #[tokio::test]
    async fn a_fill_that_raced_a_write_is_not_installed() {
        let s = store();
        let k = key(H, "u");
        let before = s.generation(&k);
        // The write lands between the fill's read and its install.
        s.put_roster_item(H, "u", &item("a@x", Subscription::None))
            .await
            .expect("put");
        s.fill(&k, before, |e| e.roster = Some(Arc::default()));
        assert!(!cached(&s, "u"));
        assert_eq!(s.roster(H, "u").await.expect("roster").1.len(), 1);
    }

    #[test]
    fn shards_stay_within_budget() {
        let mut shard = Shard::default();
        let big = Arc::new(RosterSnapshot {
            version: 1,
            items: vec![item("a@x", Subscription::Both); 1000],
        });
        for i in 0..100 {
            shard.update(&format!("h/u{i}"), |e| e.roster = Some(big.clone()));
            assert!(shard.weight <= MAX_WEIGHT / SHARDS + 1001);
            let real: usize = shard.entries.values().map(Entry::weight).sum();
            assert_eq!(shard.weight, real);
        }
        shard.changed("h/u99", |e| *e = Entry::default());
        let real: usize = shard.entries.values().map(Entry::weight).sum();
        assert_eq!(shard.weight, real);
    }
}
