//! SQLite backend: the shared conformance suite on in-memory and file databases, plus what is
//! specific to SQLite (reopening, migrations, URLs, corrupt rows, two connections on one file).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use starling_store::conformance::{self, item, sample_credentials};
use starling_store::{
    open, AccountStore, OfflineStore, RosterStore, SqliteStore, Store, StoreError, Subscription,
};

/// A unique temporary folder, removed on drop (also when a test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "starling-store-{name}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_memory() {
    let store = SqliteStore::open_in_memory().expect("open in memory");
    conformance::run_all(Arc::new(store)).await;
}

/// The server's view: the same suite through the read cache (every write path must drop
/// what it changed, or a read after it fails here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_cache() {
    let store = SqliteStore::open_in_memory().expect("open in memory");
    conformance::run_all(starling_store::CachedStore::wrap(Arc::new(store))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_file_via_url() {
    let dir = TempDir::new("conformance");
    // A missing nested folder is created.
    let db = dir.path().join("nested/deeper/starling.db");
    let url = format!("sqlite://{}", db.display());
    assert!(url.starts_with("sqlite:///"), "temp dir is absolute: {url}");
    let store = open(&url).await.expect("open file store");
    conformance::run_all(store).await;
    assert!(db.exists());
}

#[tokio::test]
async fn memory_url_opens_an_empty_store() {
    let store = open("sqlite::memory:").await.expect("open");
    assert_eq!(store.count_accounts("example.org").await.expect("count"), 0);
    conformance::accounts(store).await;
}

#[tokio::test]
async fn reopen_keeps_data_and_does_not_rerun_migrations() {
    let dir = TempDir::new("reopen");
    let db = dir.path().join("starling.db");
    let h = "example.org";

    let first = SqliteStore::open(&db).expect("open");
    let migrations = first.schema_versions().await.expect("versions");
    assert_eq!(migrations.len(), 1);
    assert_eq!(migrations[0].0, 1);
    first
        .create_account(h, "juliet", &sample_credentials(7))
        .await
        .expect("create");
    let v = first
        .put_roster_item(h, "juliet", &item("romeo@example.net", Subscription::Both))
        .await
        .expect("put");
    first
        .push_offline(h, "juliet", "<message/>")
        .await
        .expect("push");
    drop(first);

    let second = SqliteStore::open(&db).expect("reopen");
    assert_eq!(
        second.schema_versions().await.expect("versions"),
        migrations,
        "no migration re-run (same rows, same applied_at)"
    );
    assert_eq!(
        second.credentials(h, "juliet").await.expect("creds"),
        Some(sample_credentials(7))
    );
    assert_eq!(second.roster_version(h, "juliet").await.expect("ver"), v);
    assert_eq!(
        second.take_offline(h, "juliet").await.expect("take"),
        ["<message/>"]
    );
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = TempDir::new("newer");
    let db = dir.path().join("starling.db");
    drop(SqliteStore::open(&db).expect("open"));
    {
        let conn = rusqlite::Connection::open(&db).expect("raw open");
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
            [],
        )
        .expect("insert future version");
    }
    match SqliteStore::open(&db) {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("999") && msg.contains("newer"), "{msg}")
        }
        other => panic!("newer schema accepted: {other:?}"),
    }
}

#[tokio::test]
async fn open_rejects_unsupported_urls() {
    for url in [
        "postgres://starling@localhost/starling",
        "postgresql://localhost/starling",
        "redis://localhost",
        "garbage",
        "",
        "sqlite://",
        "sqlite:relative.db",
    ] {
        match open(url).await {
            Err(StoreError::Backend(msg)) => assert!(!msg.is_empty()),
            Err(other) => panic!("{url:?}: wrong error kind {other:?}"),
            Ok(_) => panic!("{url:?} accepted"),
        }
    }
    let Err(StoreError::Backend(msg)) = open("postgres://localhost/starling").await else {
        panic!("postgres accepted");
    };
    assert!(
        msg.contains("unsupported storage URL scheme") && msg.contains("supported: sqlite://"),
        "{msg}"
    );
}

#[tokio::test]
async fn undecodable_rows_are_corrupt_not_panics() {
    let dir = TempDir::new("corrupt");
    let db = dir.path().join("starling.db");
    let store = SqliteStore::open(&db).expect("open");
    let h = "example.org";
    store
        .create_account(h, "a", &sample_credentials(1))
        .await
        .expect("create");
    store
        .put_roster_item(h, "a", &item("b@example.org", Subscription::To))
        .await
        .expect("put");
    {
        let conn = rusqlite::Connection::open(&db).expect("raw open");
        conn.execute(
            "DELETE FROM account_scram WHERE mechanism = 'SCRAM-SHA-512'",
            [],
        )
        .expect("delete row");
        conn.execute("UPDATE roster_items SET groups_json = 'nope'", [])
            .expect("break groups");
    }
    assert!(matches!(
        store.credentials(h, "a").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.roster(h, "a").await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_see_each_other() {
    let dir = TempDir::new("shared");
    let db = dir.path().join("starling.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).expect("open a"));
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).expect("open b"));
    let h = "example.org";

    let writes = (0..20).map(|i| {
        let s = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        tokio::spawn(async move {
            s.put_roster_item(h, "u", &item(&format!("c{i}@x"), Subscription::None))
                .await
                .expect("put")
        })
    });
    let mut versions = Vec::new();
    for w in writes.collect::<Vec<_>>() {
        versions.push(w.await.expect("join"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    assert_eq!(b.roster(h, "u").await.expect("roster").1.len(), 20);
    assert_eq!(a.roster_version(h, "u").await.expect("ver"), 20);
}
