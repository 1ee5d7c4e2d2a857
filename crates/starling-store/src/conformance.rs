//! Storage conformance suite: the behaviour every backend must show, written once against the
//! traits so SQLite, PostgreSQL and any later backend run the same checks. Failures panic
//! (these are test helpers), with a message naming the check.
//!
//! Give it a fresh, empty store. Each area uses its own hosts (`*.conformance.example`), so the
//! per-area functions may also run one after another on the same store.

use std::collections::HashSet;
use std::sync::Arc;

use crate::{RosterItem, ScramCredentials, Store, StoreError, StoredCredentials, Subscription};

/// Runs every area.
pub async fn run_all(store: Arc<dyn Store>) {
    accounts(Arc::clone(&store)).await;
    delete_cascade(Arc::clone(&store)).await;
    roster(Arc::clone(&store)).await;
    roster_concurrent_versions(Arc::clone(&store)).await;
    pending_in(Arc::clone(&store)).await;
    offline(Arc::clone(&store)).await;
    offline_concurrent_take(Arc::clone(&store)).await;
    key_value(Arc::clone(&store)).await;
    map(Arc::clone(&store)).await;
    isolation(store).await;
}

/// Distinct, recognisable credentials; `seed` varies every byte and the iteration counts
/// (including the extremes of `u32`, which an i32 column would mangle).
pub fn sample_credentials(seed: u8) -> StoredCredentials {
    let scram = |len: usize, tag: u8, iterations: u32| ScramCredentials {
        salt: (0..16).map(|i| seed ^ tag ^ i).collect(),
        iterations,
        stored_key: (0..len as u8)
            .map(|i| i.wrapping_mul(seed | 1) ^ tag)
            .collect(),
        server_key: (0..len as u8)
            .map(|i| i.wrapping_add(seed) ^ tag ^ 0xff)
            .collect(),
    };
    StoredCredentials {
        sha1: scram(20, 0x10, 4096 + u32::from(seed)),
        sha256: scram(32, 0x20, u32::MAX - u32::from(seed)),
        sha512: scram(64, 0x40, 1 + u32::from(seed)),
    }
}

/// A roster item with the given subscription and no frills.
pub fn item(jid: &str, subscription: Subscription) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        name: None,
        subscription,
        ask_out: false,
        approved: false,
        groups: Vec::new(),
    }
}

fn unexpected<T: std::fmt::Debug>(what: &str, got: T) -> ! {
    panic!("{what}: unexpected result {got:?}")
}

/// Create, duplicate, credentials round trip and update, list, count, delete.
pub async fn accounts(store: Arc<dyn Store>) {
    let h = "accounts.conformance.example";
    let s = &*store;
    let c1 = sample_credentials(1);
    let c2 = sample_credentials(2);

    assert!(!s.account_exists(h, "alice").await.expect("exists"));
    assert_eq!(s.credentials(h, "alice").await.expect("creds"), None);
    assert_eq!(s.count_accounts(h).await.expect("count"), 0);
    assert!(s.list_accounts(h).await.expect("list").is_empty());

    s.create_account(h, "alice", &c1)
        .await
        .expect("create alice");
    assert!(s.account_exists(h, "alice").await.expect("exists"));
    assert_eq!(
        s.credentials(h, "alice").await.expect("creds"),
        Some(c1.clone()),
        "credentials round trip"
    );

    match s.create_account(h, "alice", &c2).await {
        Err(StoreError::Conflict(what)) => assert_eq!(what, format!("alice@{h}")),
        other => unexpected("duplicate create", other),
    }
    assert_eq!(
        s.credentials(h, "alice").await.expect("creds"),
        Some(c1.clone()),
        "a failed duplicate create must not touch the credentials"
    );

    s.set_credentials(h, "alice", &c2).await.expect("set creds");
    assert_eq!(
        s.credentials(h, "alice").await.expect("creds"),
        Some(c2.clone())
    );

    match s.set_credentials(h, "nobody", &c1).await {
        Err(StoreError::NotFound(what)) => assert_eq!(what, format!("nobody@{h}")),
        other => unexpected("set_credentials without account", other),
    }
    assert!(!s.account_exists(h, "nobody").await.expect("exists"));
    match s.delete_account(h, "nobody").await {
        Err(StoreError::NotFound(what)) => assert_eq!(what, format!("nobody@{h}")),
        other => unexpected("delete without account", other),
    }

    // Inserted out of order, including non-ASCII; listed in byte order.
    for user in ["carol", "bob", "\u{e9}mile", "dave"] {
        s.create_account(h, user, &sample_credentials(3))
            .await
            .expect("create");
    }
    assert_eq!(
        s.list_accounts(h).await.expect("list"),
        ["alice", "bob", "carol", "dave", "\u{e9}mile"],
        "list_accounts sorted"
    );
    assert_eq!(s.count_accounts(h).await.expect("count"), 5);

    s.delete_account(h, "dave").await.expect("delete dave");
    assert!(!s.account_exists(h, "dave").await.expect("exists"));
    assert_eq!(s.credentials(h, "dave").await.expect("creds"), None);
    assert_eq!(s.count_accounts(h).await.expect("count"), 4);
    assert_eq!(
        s.list_accounts(h).await.expect("list"),
        ["alice", "bob", "carol", "\u{e9}mile"]
    );
    // Re-registering a deleted name works and starts fresh.
    s.create_account(h, "dave", &c1).await.expect("recreate");
    assert_eq!(s.credentials(h, "dave").await.expect("creds"), Some(c1));
}

/// Writes one of every kind of per-user data.
async fn fill_user(s: &dyn Store, h: &str, u: &str, tag: &str) {
    s.put_roster_item(
        h,
        u,
        &item(&format!("{tag}@contacts.example"), Subscription::Both),
    )
    .await
    .expect("put roster");
    s.add_pending_in(h, u, "asker@example.net", &format!("<presence n='{tag}'/>"))
        .await
        .expect("add pending");
    s.push_offline(h, u, &format!("<message n='{tag}'/>"))
        .await
        .expect("push offline");
    s.kv_set(h, u, "vcard", Some(tag)).await.expect("kv_set");
    s.map_set(h, u, "private", "ns", Some(tag))
        .await
        .expect("map_set");
}

/// Asserts every kind of per-user data is gone.
async fn assert_user_empty(s: &dyn Store, h: &str, u: &str) {
    let (_, items) = s.roster(h, u).await.expect("roster");
    assert!(items.is_empty(), "roster of {u}@{h} not deleted");
    assert!(s.pending_in(h, u).await.expect("pending").is_empty());
    assert_eq!(s.count_offline(h, u).await.expect("count offline"), 0);
    assert_eq!(s.kv_get(h, u, "vcard").await.expect("kv_get"), None);
    assert!(s
        .map_all(h, u, "private")
        .await
        .expect("map_all")
        .is_empty());
}

/// `delete_account` removes all of the user's data, and only theirs.
pub async fn delete_cascade(store: Arc<dyn Store>) {
    let h = "cascade.conformance.example";
    let s = &*store;
    s.create_account(h, "gone", &sample_credentials(4))
        .await
        .expect("create");
    s.create_account(h, "kept", &sample_credentials(5))
        .await
        .expect("create");
    fill_user(s, h, "gone", "gone").await;
    fill_user(s, h, "kept", "kept").await;

    s.delete_account(h, "gone").await.expect("delete");
    assert!(!s.account_exists(h, "gone").await.expect("exists"));
    assert_eq!(s.credentials(h, "gone").await.expect("creds"), None);
    assert_user_empty(s, h, "gone").await;

    // The neighbour is untouched.
    assert_eq!(
        s.credentials(h, "kept").await.expect("creds"),
        Some(sample_credentials(5))
    );
    let (v, items) = s.roster(h, "kept").await.expect("roster");
    assert_eq!((v, items.len()), (1, 1));
    assert_eq!(s.pending_in(h, "kept").await.expect("pending").len(), 1);
    assert_eq!(s.count_offline(h, "kept").await.expect("count"), 1);
    assert_eq!(
        s.kv_get(h, "kept", "vcard").await.expect("kv"),
        Some("kept".into())
    );
    assert_eq!(
        s.map_get(h, "kept", "private", "ns").await.expect("map"),
        Some("kept".into())
    );

    // A recreated account does not inherit anything.
    s.create_account(h, "gone", &sample_credentials(6))
        .await
        .expect("recreate");
    assert_user_empty(s, h, "gone").await;
}

/// Put, replace, remove, sorted listing, monotonic versions, field round trips.
pub async fn roster(store: Arc<dyn Store>) {
    let (h, u) = ("roster.conformance.example", "romeo");
    let s = &*store;

    assert_eq!(s.roster_version(h, u).await.expect("version"), 0);
    assert_eq!(s.roster(h, u).await.expect("roster"), (0, Vec::new()));
    assert_eq!(s.roster_item(h, u, "x@y").await.expect("item"), None);
    assert_eq!(
        s.remove_roster_item(h, u, "absent@example.net")
            .await
            .expect("remove absent"),
        0,
        "removing from an empty roster keeps version 0"
    );

    let full = RosterItem {
        jid: "juliet@capulet.example".into(),
        name: Some("Juliet \u{2764} <3 & \"q\"".into()),
        subscription: Subscription::To,
        ask_out: true,
        approved: true,
        groups: vec!["Lovers".into(), "Capulets".into(), "\u{c9}t\u{e9}".into()],
    };
    let mut versions = Vec::new();
    versions.push(
        s.put_roster_item(h, u, &item("nurse@capulet.example", Subscription::None))
            .await
            .expect("put"),
    );
    versions.push(s.put_roster_item(h, u, &full).await.expect("put"));
    versions.push(
        s.put_roster_item(h, u, &item("benvolio@montague.example", Subscription::From))
            .await
            .expect("put"),
    );
    versions.push(
        s.put_roster_item(h, u, &item("mercutio@verona.example", Subscription::Both))
            .await
            .expect("put"),
    );
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]) && versions[0] >= 1,
        "versions must increase: {versions:?}"
    );
    assert_eq!(s.roster_version(h, u).await.expect("version"), versions[3]);

    assert_eq!(
        s.roster_item(h, u, &full.jid).await.expect("item"),
        Some(full.clone()),
        "every field round-trips"
    );
    let (v, items) = s.roster(h, u).await.expect("roster");
    assert_eq!(v, versions[3]);
    let jids: Vec<&str> = items.iter().map(|i| i.jid.as_str()).collect();
    assert_eq!(
        jids,
        [
            "benvolio@montague.example",
            "juliet@capulet.example",
            "mercutio@verona.example",
            "nurse@capulet.example"
        ],
        "roster sorted by jid"
    );
    assert_eq!(items[1], full);
    assert_eq!(items[2].subscription, Subscription::Both);

    // Replace: fields change, the item count does not, the version moves on.
    let replaced = RosterItem {
        name: Some(String::new()), // empty name is kept apart from no name
        subscription: Subscription::Both,
        ask_out: false,
        approved: false,
        groups: Vec::new(),
        ..full.clone()
    };
    let v_replace = s.put_roster_item(h, u, &replaced).await.expect("replace");
    assert!(v_replace > versions[3]);
    assert_eq!(
        s.roster_item(h, u, &full.jid).await.expect("item"),
        Some(replaced.clone())
    );
    assert_eq!(s.roster(h, u).await.expect("roster").1.len(), 4);

    // Remove: bumps; removing again is Ok and keeps the version.
    let v_remove = s
        .remove_roster_item(h, u, "nurse@capulet.example")
        .await
        .expect("remove");
    assert!(v_remove > v_replace);
    assert_eq!(
        s.remove_roster_item(h, u, "nurse@capulet.example")
            .await
            .expect("remove again"),
        v_remove
    );
    assert_eq!(s.roster_version(h, u).await.expect("version"), v_remove);
    assert_eq!(
        s.roster_item(h, u, "nurse@capulet.example")
            .await
            .expect("item"),
        None
    );
    let (v, items) = s.roster(h, u).await.expect("roster");
    assert_eq!((v, items.len()), (v_remove, 3));

    // Removing the last items leaves an empty roster whose version still only grows.
    for i in items {
        s.remove_roster_item(h, u, &i.jid).await.expect("remove");
    }
    let (v_empty, items) = s.roster(h, u).await.expect("roster");
    assert!(items.is_empty() && v_empty > v_remove);
    let v_again = s
        .put_roster_item(h, u, &item("nurse@capulet.example", Subscription::None))
        .await
        .expect("put");
    assert!(v_again > v_empty);
}

/// Concurrent writes each get their own version: the bump is atomic with the write.
pub async fn roster_concurrent_versions(store: Arc<dyn Store>) {
    let (h, u) = ("roster-race.conformance.example", "busy");
    let n = 16u64;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .put_roster_item(
                        h,
                        u,
                        &item(&format!("c{i:02}@example.net"), Subscription::None),
                    )
                    .await
                    .expect("put")
            })
        })
        .collect();
    let mut versions = HashSet::new();
    for t in tasks {
        versions.insert(t.await.expect("join"));
    }
    assert_eq!(versions.len() as u64, n, "duplicate versions: {versions:?}");
    let (v, items) = store.roster(h, u).await.expect("roster");
    assert_eq!(items.len() as u64, n);
    assert_eq!(Some(&v), versions.iter().max());
}

/// Pending-in requests: add, replace (moves to newest), remove, oldest-first listing.
pub async fn pending_in(store: Arc<dyn Store>) {
    let (h, u) = ("pending.conformance.example", "juliet");
    let s = &*store;
    let req = |from: &str, n: u32| format!("<presence from='{from}' type='subscribe' n='{n}'/>");

    assert!(s.pending_in(h, u).await.expect("list").is_empty());
    assert!(!s
        .remove_pending_in(h, u, "a@x")
        .await
        .expect("remove absent"));

    for from in ["c@x", "a@x", "b@x"] {
        s.add_pending_in(h, u, from, &req(from, 1))
            .await
            .expect("add");
    }
    let want = |pairs: &[(&str, u32)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(f, n)| (f.to_string(), req(f, *n)))
            .collect()
    };
    assert_eq!(
        s.pending_in(h, u).await.expect("list"),
        want(&[("c@x", 1), ("a@x", 1), ("b@x", 1)]),
        "oldest first, not sorted by jid"
    );

    // A repeated request replaces the old one and is now the newest.
    s.add_pending_in(h, u, "c@x", &req("c@x", 2))
        .await
        .expect("replace");
    assert_eq!(
        s.pending_in(h, u).await.expect("list"),
        want(&[("a@x", 1), ("b@x", 1), ("c@x", 2)])
    );

    assert!(s.remove_pending_in(h, u, "b@x").await.expect("remove"));
    assert!(!s
        .remove_pending_in(h, u, "b@x")
        .await
        .expect("remove again"));
    assert_eq!(
        s.pending_in(h, u).await.expect("list"),
        want(&[("a@x", 1), ("c@x", 2)])
    );

    // Pending requests are not roster items and do not move the roster version.
    assert_eq!(s.roster(h, u).await.expect("roster"), (0, Vec::new()));
}

/// Push, count, take (oldest first, then gone), large and non-ASCII stanzas.
pub async fn offline(store: Arc<dyn Store>) {
    let (h, u) = ("offline.conformance.example", "juliet");
    let s = &*store;

    assert_eq!(s.count_offline(h, u).await.expect("count"), 0);
    assert!(s.take_offline(h, u).await.expect("take").is_empty());

    let big = format!(
        "<message><body>{}</body></message>",
        "\u{1f426} wherefore art thou? ".repeat(5000)
    );
    let msgs = [
        "<message id='1'><body>one</body></message>".to_owned(),
        big,
        "<message id='3'><body>\u{e9}\u{4e2d}'\"&amp;</body></message>".to_owned(),
    ];
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            s.push_offline(h, u, m).await.expect("push"),
            i as u64 + 1,
            "push returns the count now stored"
        );
    }
    assert_eq!(s.count_offline(h, u).await.expect("count"), 3);
    assert_eq!(
        s.take_offline(h, u).await.expect("take"),
        msgs,
        "oldest first"
    );
    assert_eq!(s.count_offline(h, u).await.expect("count"), 0);
    assert!(s.take_offline(h, u).await.expect("take again").is_empty());

    // Counting starts over after a take.
    assert_eq!(s.push_offline(h, u, "<message/>").await.expect("push"), 1);
    assert_eq!(s.take_offline(h, u).await.expect("take"), ["<message/>"]);
}

/// Takes racing with pushes deliver every stanza exactly once, each sender's in order.
pub async fn offline_concurrent_take(store: Arc<dyn Store>) {
    let (h, u) = ("offline-race.conformance.example", "popular");
    let (senders, per_sender) = (4u32, 25u32);

    let pushers: Vec<_> = (0..senders)
        .map(|p| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..per_sender {
                    store
                        .push_offline(h, u, &format!("{p}:{i}"))
                        .await
                        .expect("push");
                }
            })
        })
        .collect();
    let taker = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..40 {
                got.extend(store.take_offline(h, u).await.expect("take"));
                tokio::task::yield_now().await;
            }
            got
        })
    };
    for p in pushers {
        p.await.expect("join pusher");
    }
    let mut got = taker.await.expect("join taker");
    got.extend(store.take_offline(h, u).await.expect("final take"));

    assert_eq!(
        got.len() as u32,
        senders * per_sender,
        "every stanza exactly once"
    );
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "no duplicates"
    );
    for p in 0..senders {
        let seq: Vec<u32> = got
            .iter()
            .filter_map(|m| m.strip_prefix(&format!("{p}:")))
            .map(|n| n.parse().expect("number"))
            .collect();
        assert_eq!(seq, (0..per_sender).collect::<Vec<_>>(), "sender {p} order");
    }
    assert_eq!(store.count_offline(h, u).await.expect("count"), 0);
}

/// Key-value documents: set, get, overwrite, delete, independent store names.
pub async fn key_value(store: Arc<dyn Store>) {
    let (h, u) = ("kv.conformance.example", "juliet");
    let s = &*store;

    assert_eq!(s.kv_get(h, u, "vcard").await.expect("get"), None);
    s.kv_set(h, u, "vcard", None).await.expect("delete absent");
    s.kv_set(h, u, "vcard", Some("<vCard/>"))
        .await
        .expect("set");
    s.kv_set(h, u, "lastactivity", Some("1700000000"))
        .await
        .expect("set");
    assert_eq!(
        s.kv_get(h, u, "vcard").await.expect("get"),
        Some("<vCard/>".into())
    );
    s.kv_set(h, u, "vcard", Some("<vCard><FN>J\u{fc}liet</FN></vCard>"))
        .await
        .expect("overwrite");
    assert_eq!(
        s.kv_get(h, u, "vcard").await.expect("get"),
        Some("<vCard><FN>J\u{fc}liet</FN></vCard>".into())
    );
    s.kv_set(h, u, "empty", Some("")).await.expect("set empty");
    assert_eq!(
        s.kv_get(h, u, "empty").await.expect("get"),
        Some(String::new()),
        "an empty value is a value"
    );
    s.kv_set(h, u, "vcard", None).await.expect("delete");
    assert_eq!(s.kv_get(h, u, "vcard").await.expect("get"), None);
    assert_eq!(
        s.kv_get(h, u, "lastactivity").await.expect("get"),
        Some("1700000000".into()),
        "other store names untouched"
    );
}

/// Maps: set, get, overwrite, delete, sorted listing, clear, independent store names.
pub async fn map(store: Arc<dyn Store>) {
    let (h, u) = ("map.conformance.example", "juliet");
    let s = &*store;
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };

    assert_eq!(s.map_get(h, u, "private", "a").await.expect("get"), None);
    assert!(s.map_all(h, u, "private").await.expect("all").is_empty());
    s.map_set(h, u, "private", "a", None)
        .await
        .expect("delete absent");
    s.map_clear(h, u, "private").await.expect("clear empty");

    for (k, v) in [
        ("storage:bookmarks", "<b/>"),
        ("a:ns", "<a/>"),
        ("z", "<z/>"),
    ] {
        s.map_set(h, u, "private", k, Some(v)).await.expect("set");
    }
    s.map_set(h, u, "blocklist", "spam@example.net", Some(""))
        .await
        .expect("set");
    assert_eq!(
        s.map_get(h, u, "private", "a:ns").await.expect("get"),
        Some("<a/>".into())
    );
    assert_eq!(
        s.map_all(h, u, "private").await.expect("all"),
        pairs(&[
            ("a:ns", "<a/>"),
            ("storage:bookmarks", "<b/>"),
            ("z", "<z/>")
        ]),
        "sorted by key"
    );

    s.map_set(h, u, "private", "a:ns", Some("<a2/>"))
        .await
        .expect("overwrite");
    s.map_set(h, u, "private", "storage:bookmarks", None)
        .await
        .expect("delete");
    assert_eq!(
        s.map_get(h, u, "private", "storage:bookmarks")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        s.map_all(h, u, "private").await.expect("all"),
        pairs(&[("a:ns", "<a2/>"), ("z", "<z/>")])
    );

    s.map_clear(h, u, "private").await.expect("clear");
    assert!(s.map_all(h, u, "private").await.expect("all").is_empty());
    assert_eq!(
        s.map_all(h, u, "blocklist").await.expect("all"),
        pairs(&[("spam@example.net", "")]),
        "clear leaves other maps alone"
    );
}

/// Same localpart on two hosts, two users on one host, and keys that would collide if a
/// backend concatenated host and user: nothing leaks between them.
pub async fn isolation(store: Arc<dyn Store>) {
    let s = &*store;
    // (host, user) pairs; the last two would both be "ab.conformance.example/c..." if joined
    // carelessly.
    let users = [
        ("one.conformance.example", "alice"),
        ("two.conformance.example", "alice"),
        ("one.conformance.example", "bob"),
        ("x.conformance.example", "ab"),
        ("bx.conformance.example", "a"),
    ];
    for (i, (h, u)) in users.iter().enumerate() {
        let tag = format!("{u}@{h}");
        s.create_account(h, u, &sample_credentials(10 + i as u8))
            .await
            .expect("create");
        fill_user(s, h, u, &tag).await;
    }
    assert_eq!(
        s.list_accounts("one.conformance.example")
            .await
            .expect("list"),
        ["alice", "bob"]
    );
    assert_eq!(
        s.count_accounts("two.conformance.example")
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        s.count_accounts("nowhere.conformance.example")
            .await
            .expect("count"),
        0
    );

    let check_own = |i: usize| {
        let (h, u) = users[i];
        let tag = format!("{u}@{h}");
        async move {
            assert_eq!(
                s.credentials(h, u).await.expect("creds"),
                Some(sample_credentials(10 + i as u8)),
                "{tag} credentials"
            );
            let (_, items) = s.roster(h, u).await.expect("roster");
            let jids: Vec<String> = items.into_iter().map(|i| i.jid).collect();
            assert_eq!(jids, [format!("{tag}@contacts.example")], "{tag} roster");
            assert_eq!(
                s.pending_in(h, u).await.expect("pending"),
                [(
                    "asker@example.net".to_owned(),
                    format!("<presence n='{tag}'/>")
                )],
                "{tag} pending"
            );
            assert_eq!(
                s.kv_get(h, u, "vcard").await.expect("kv"),
                Some(tag.clone()),
                "{tag} kv"
            );
            assert_eq!(
                s.map_all(h, u, "private").await.expect("map"),
                [("ns".to_owned(), tag.clone())],
                "{tag} map"
            );
        }
    };
    for i in 0..users.len() {
        check_own(i).await;
    }
    // Taking one user's offline messages leaves the others'.
    let (h0, u0) = users[0];
    assert_eq!(
        s.take_offline(h0, u0).await.expect("take"),
        [format!("<message n='{u0}@{h0}'/>")]
    );
    for (h, u) in &users[1..] {
        assert_eq!(s.count_offline(h, u).await.expect("count"), 1, "{u}@{h}");
    }

    // Deleting alice on one host leaves alice on the other host (and everyone else).
    s.delete_account(h0, u0).await.expect("delete");
    assert_user_empty(s, h0, u0).await;
    for i in 1..users.len() {
        check_own(i).await;
    }
}
