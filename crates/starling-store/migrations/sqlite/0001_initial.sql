-- 0001_initial: Starling's first SQLite schema.
--
-- Every per-user table is keyed by (host, username): the account's domain and its normalized
-- localpart. Columns avoid SQL keywords (user, groups, key) so the PostgreSQL schema can mirror
-- this one without quoting.
--
-- Only SCRAM credentials hang off `accounts` by foreign key. The other per-user tables do not
-- require an account row (the store does not police callers); `delete_account` removes them
-- explicitly, in the same transaction as the account.

CREATE TABLE accounts (
    host       TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    created_at INTEGER NOT NULL, -- unix seconds
    PRIMARY KEY (host, username)
) WITHOUT ROWID;

-- One row per SCRAM hash (RFC 5802 §3: salt, iteration count, StoredKey, ServerKey).
-- There is never a clear password to store. `mechanism` is the SASL name ("SCRAM-SHA-256");
-- rows with names the code does not know are ignored, so adding a hash needs no rewrite.
CREATE TABLE account_scram (
    host       TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    mechanism  TEXT    NOT NULL,
    salt       BLOB    NOT NULL,
    iterations INTEGER NOT NULL,
    stored_key BLOB    NOT NULL,
    server_key BLOB    NOT NULL,
    PRIMARY KEY (host, username, mechanism),
    FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
) WITHOUT ROWID;

-- RFC 6121 §2 roster items. `groups_json` is a JSON array of group names, in the given order.
CREATE TABLE roster_items (
    host         TEXT    NOT NULL,
    username     TEXT    NOT NULL,
    jid          TEXT    NOT NULL, -- bare JID of the contact
    name         TEXT,
    subscription TEXT    NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask_out      INTEGER NOT NULL CHECK (ask_out IN (0, 1)),
    approved     INTEGER NOT NULL CHECK (approved IN (0, 1)),
    groups_json  TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (host, username, jid)
) WITHOUT ROWID;

-- XEP-0237 roster versions: a per-user counter bumped in the same transaction as each change.
CREATE TABLE roster_versions (
    host     TEXT    NOT NULL,
    username TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    PRIMARY KEY (host, username)
) WITHOUT ROWID;

-- RFC 6121 §3.1.3 pending inbound subscription requests; `id` orders them oldest first.
CREATE TABLE roster_pending_in (
    id          INTEGER PRIMARY KEY,
    host        TEXT    NOT NULL,
    username    TEXT    NOT NULL,
    from_jid    TEXT    NOT NULL,
    stanza      TEXT    NOT NULL,
    received_at INTEGER NOT NULL, -- unix seconds
    UNIQUE (host, username, from_jid)
);

-- XEP-0160 offline messages; `id` orders them oldest first.
CREATE TABLE offline_messages (
    id        INTEGER PRIMARY KEY,
    host      TEXT    NOT NULL,
    username  TEXT    NOT NULL,
    stanza    TEXT    NOT NULL,
    stored_at INTEGER NOT NULL -- unix seconds (for future expiry)
);
CREATE INDEX offline_messages_by_user ON offline_messages (host, username, id);

-- Per-user documents (vCard, last activity...): one value per (user, store).
CREATE TABLE kv_store (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (host, username, store)
) WITHOUT ROWID;

-- Per-user keyed documents (private XML by namespace, blocklist by JID...).
CREATE TABLE map_store (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    map_key  TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (host, username, store, map_key)
) WITHOUT ROWID;
