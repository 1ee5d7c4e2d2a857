// Interop scenarios with xmpp.js (@xmpp/client), driven by interop/test_xmppjs.py.
//
//   node scenario.mjs '{"scenario": "chat", "service": "ws://127.0.0.1:5280/xmpp-websocket",
//                       "domain": "localhost", "users": {"alice": {"jid": ..., "password": ...},
//                       "bob": {...}}}'
//
// Scenarios: login, subscription, presence, chat, offline (see interop/README.md).
// Prints the XML trace on stderr and, last on stdout, one line
//   RESULT {"ok": true|false, "error": "...", "details": {...}}
// Exit code 0 only when the scenario passed.
// TLS: the servers under test use self-signed certificates; the caller sets
// NODE_TLS_REJECT_UNAUTHORIZED=0. On Node < 22 the caller passes --experimental-websocket.

import { client, xml } from "@xmpp/client";
import { randomBytes } from "node:crypto";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const STEP_MS = cfg.stepTimeoutMs ?? 10000;
const SCENARIO_MS = cfg.scenarioTimeoutMs ?? 30000;
const NS_ROSTER = "jabber:iq:roster";
const NS_DELAY = "urn:xmpp:delay";
const users = [];
const details = {};

class ScenarioFailure extends Error {}

function fail(msg) {
  throw new ScenarioFailure(msg);
}

function check(cond, msg) {
  if (!cond) fail(msg);
}

function rand() {
  return randomBytes(3).toString("hex");
}

function bare(j) {
  return String(j).split("/")[0];
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new ScenarioFailure(`${what}: no answer within ${ms / 1000} s`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

function trace(label, dir, el) {
  process.stderr.write(`${label} ${dir}: ${el.toString()}\n`);
}

class User {
  constructor(label, account) {
    this.label = label;
    this.jid = account.jid;
    this.password = account.password;
    this.inbox = []; // every stanza received, in order
    this.wakeups = new Set();
    this.mechanism = null;
    this.xmpp = null;
    this.fullJid = null;
    users.push(this);
  }

  async connect() {
    const [username, domain] = this.jid.split("@");
    const xmpp = client({
      service: cfg.service,
      domain,
      username,
      password: this.password,
      resource: `xmppjs-${this.label}-${rand()}`,
    });
    this.xmpp = xmpp;
    xmpp.reconnect.stop(); // a lost connection must fail the scenario, not be papered over
    xmpp.on("error", (err) => process.stderr.write(`${this.label} error: ${err}\n`));
    xmpp.on("send", (el) => {
      trace(this.label, "SEND", el);
      // SASL1 <auth mechanism=…/> or SASL2 <authenticate mechanism=…/>
      if ((el.is("auth") || el.is("authenticate")) && el.attrs.mechanism) {
        this.mechanism = el.attrs.mechanism;
      }
    });
    xmpp.on("element", (el) => trace(this.label, "RECV", el));
    xmpp.on("stanza", (st) => {
      this.inbox.push(st);
      for (const wake of this.wakeups) wake();
    });
    // Roster pushes (RFC 6121 2.1.6) must be acknowledged.
    xmpp.iqCallee.set(NS_ROSTER, "query", () => true);
    let address;
    try {
      address = await withTimeout(xmpp.start(), STEP_MS, `${this.label}: login`);
    } catch (err) {
      fail(
        `${this.label}: login as ${this.jid} via ${cfg.service} failed ` +
          `(SASL mechanism ${this.mechanism}): ${err.message ?? err}`,
      );
    }
    this.fullJid = address.toString();
    process.stderr.write(`${this.label}: online as ${this.fullJid}, SASL ${this.mechanism}\n`);
  }

  async disconnect() {
    if (!this.xmpp) return;
    const x = this.xmpp;
    this.xmpp = null;
    try {
      await withTimeout(x.stop(), 5000, `${this.label}: stop`);
    } catch (err) {
      process.stderr.write(`${this.label}: stop: ${err.message ?? err}\n`);
    }
  }

  send(el) {
    return this.xmpp.send(el);
  }

  presence(attrs = {}) {
    return this.send(xml("presence", attrs));
  }

  chat(to, body) {
    return this.send(xml("message", { to, type: "chat", id: rand() }, xml("body", {}, body)));
  }

  async rosterGet() {
    const q = await withTimeout(
      this.xmpp.iqCaller.get(xml("query", { xmlns: NS_ROSTER })),
      STEP_MS,
      `${this.label}: roster get`,
    );
    return rosterItems(q);
  }

  async rosterSet(contact, name) {
    await withTimeout(
      this.xmpp.iqCaller.set(xml("query", { xmlns: NS_ROSTER }, xml("item", { jid: contact, name }))),
      STEP_MS,
      `${this.label}: roster set ${contact}`,
    );
  }

  // Waits until a stanza matching pred has been received (earlier ones count too).
  async waitFor(pred, what, ms = STEP_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.inbox.find(pred);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.inbox.map((s) => `    ${s.toString()}`).join("\n") || "    (none)";
        fail(`${this.label}: ${what} did not arrive within ${ms / 1000} s; received:\n${seen}`);
      }
      await new Promise((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.wakeups.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, left);
        this.wakeups.add(wake);
      });
    }
  }
}

function rosterItems(query) {
  const out = {};
  for (const item of query?.getChildren("item") ?? []) {
    out[item.attrs.jid] = {
      subscription: item.attrs.subscription ?? "none",
      ask: item.attrs.ask ?? "",
      name: item.attrs.name ?? "",
    };
  }
  return out;
}

const isPresence = (type, from, { bareFrom }) => (st) =>
  st.is("presence") &&
  (st.attrs.type ?? "available") === type &&
  (bareFrom ? bare(st.attrs.from) : st.attrs.from) === from;

const isAvailableFrom = (full) => (st) =>
  st.is("presence") && !st.attrs.type && st.attrs.from === full;

const isRosterPush = (contact, subscription) => (st) => {
  if (!st.is("iq") || st.attrs.type !== "set") return false;
  const item = rosterItems(st.getChild("query", NS_ROSTER))[contact];
  return item !== undefined && item.subscription === subscription;
};

const hasBody = (body) => (st) => st.is("message") && st.getChildText("body") === body;

// Log in, get the roster (an "interested resource", RFC 6121 2.1.6), send initial presence.
async function online(...us) {
  await Promise.all(us.map((u) => u.connect()));
  for (const u of us) {
    await u.rosterGet();
    await u.presence();
  }
}

async function subscribeBothWays(a, b) {
  await a.rosterSet(b.jid, "Bee");
  await a.waitFor(isRosterPush(b.jid, "none"), `roster push adding ${b.jid}`);
  await a.presence({ to: b.jid, type: "subscribe" });
  await b.waitFor(
    isPresence("subscribe", a.jid, { bareFrom: true }),
    `<presence type='subscribe'/> from ${a.jid}`,
  );
  await b.presence({ to: a.jid, type: "subscribed" });
  await a.waitFor(
    isPresence("subscribed", b.jid, { bareFrom: true }),
    `<presence type='subscribed'/> from ${b.jid}`,
  );
  await a.waitFor(isRosterPush(b.jid, "to"), `roster push with ${b.jid} subscription='to'`);
  await b.waitFor(isRosterPush(a.jid, "from"), `roster push with ${a.jid} subscription='from'`);
  await b.presence({ to: a.jid, type: "subscribe" });
  await a.waitFor(
    isPresence("subscribe", b.jid, { bareFrom: true }),
    `<presence type='subscribe'/> from ${b.jid}`,
  );
  await a.presence({ to: b.jid, type: "subscribed" });
  await b.waitFor(
    isPresence("subscribed", a.jid, { bareFrom: true }),
    `<presence type='subscribed'/> from ${a.jid}`,
  );
  await a.waitFor(isRosterPush(b.jid, "both"), `roster push with ${b.jid} subscription='both'`);
  await b.waitFor(isRosterPush(a.jid, "both"), `roster push with ${a.jid} subscription='both'`);
}

const scenarios = {
  async login() {
    const a = new User("alice", cfg.users.alice);
    await a.connect();
    check(bare(a.fullJid) === a.jid, `bound JID ${a.fullJid} is not for ${a.jid}`);
    check(a.fullJid.includes("/") && !a.fullJid.endsWith("/"), `no resource bound: ${a.fullJid}`);
    check(
      typeof a.mechanism === "string" && a.mechanism.startsWith("SCRAM-"),
      `logged in with SASL ${a.mechanism}, expected a SCRAM mechanism`,
    );
    const roster = await a.rosterGet();
    check(Object.keys(roster).length === 0, `a fresh account's roster is not empty: ${JSON.stringify(roster)}`);
    details.jid = a.fullJid;
    details.mechanism = a.mechanism;
  },

  async subscription() {
    const a = new User("alice", cfg.users.alice);
    const b = new User("bob", cfg.users.bob);
    await online(a, b);
    await subscribeBothWays(a, b);
    const ra = await a.rosterGet();
    const rb = await b.rosterGet();
    check(ra[b.jid]?.subscription === "both", `alice's roster: ${JSON.stringify(ra)}`);
    check(rb[a.jid]?.subscription === "both", `bob's roster: ${JSON.stringify(rb)}`);
    check(ra[b.jid].name === "Bee", `alice's roster lost the item name: ${JSON.stringify(ra)}`);
    check(!ra[b.jid].ask && !rb[a.jid].ask, `pending ask left: ${JSON.stringify([ra, rb])}`);
  },

  async presence() {
    const a = new User("alice", cfg.users.alice);
    const b = new User("bob", cfg.users.bob);
    await online(a, b);
    await subscribeBothWays(a, b);
    await a.waitFor(isAvailableFrom(b.fullJid), `available presence from ${b.fullJid} after approval`);
    await b.waitFor(isAvailableFrom(a.fullJid), `available presence from ${a.fullJid} after approval`);
    const oldA = a.fullJid;
    await a.disconnect();
    await b.waitFor(
      isPresence("unavailable", oldA, { bareFrom: false }),
      `unavailable presence from ${oldA}`,
    );
    const a2 = new User("alice-again", cfg.users.alice);
    await online(a2);
    await a2.waitFor(isAvailableFrom(b.fullJid), `available presence from ${b.fullJid} after login (probe)`);
    await b.waitFor(isAvailableFrom(a2.fullJid), `available presence from ${a2.fullJid} after its login`);
  },

  async chat() {
    const a = new User("alice", cfg.users.alice);
    const b = new User("bob", cfg.users.bob);
    const body1 = `hello bob <&> 'quotes' "dq" ünïcødé ✓ ${rand()}`;
    const body2 = `hi alice, back at you ${rand()}`;
    await online(a, b);
    await a.chat(b.jid, body1);
    const m = await b.waitFor(hasBody(body1), `chat message from ${a.fullJid} with body ${JSON.stringify(body1)}`);
    check(m.attrs.type === "chat", `message type ${m.attrs.type}, expected chat`);
    check(m.attrs.from === a.fullJid, `from=${m.attrs.from}, expected ${a.fullJid}`);
    await b.chat(m.attrs.from, body2);
    const m2 = await a.waitFor(hasBody(body2), `chat message from ${b.fullJid} with body ${JSON.stringify(body2)}`);
    check(m2.attrs.type === "chat", `message type ${m2.attrs.type}, expected chat`);
    check(m2.attrs.from === b.fullJid, `from=${m2.attrs.from}, expected ${b.fullJid}`);
  },

  async offline() {
    const a = new User("alice", cfg.users.alice);
    const b = new User("bob", cfg.users.bob);
    const body = `while you were away ${rand()}`;
    await online(a, b);
    await b.disconnect();
    await new Promise((r) => setTimeout(r, 300));
    await a.chat(b.jid, body);
    await new Promise((r) => setTimeout(r, 500));
    const b2 = new User("bob-again", cfg.users.bob);
    await online(b2);
    const m = await b2.waitFor(hasBody(body), `offline message with body ${JSON.stringify(body)}`);
    const delay = m.getChild("delay", NS_DELAY);
    check(delay, `offline message without <delay xmlns='${NS_DELAY}'/>: ${m.toString()}`);
    check(delay.attrs.stamp, `<delay/> without stamp: ${m.toString()}`);
    check(m.attrs.from === a.fullJid, `from=${m.attrs.from}, expected ${a.fullJid}`);
    check(m.attrs.type === "chat", `message type ${m.attrs.type}, expected chat`);
  },
};

async function main() {
  const run = scenarios[cfg.scenario];
  if (!run) throw new ScenarioFailure(`unknown scenario ${cfg.scenario}`);
  if (cfg.service?.startsWith("ws") && typeof globalThis.WebSocket !== "function") {
    throw new ScenarioFailure("no global WebSocket: run node >= 22 or pass --experimental-websocket");
  }
  let timer;
  const overall = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new ScenarioFailure(`scenario did not finish within ${SCENARIO_MS / 1000} s`)),
      SCENARIO_MS,
    );
  });
  try {
    await Promise.race([run(), overall]);
  } finally {
    clearTimeout(timer);
    await Promise.all(users.map((u) => u.disconnect()));
  }
}

let result;
try {
  await main();
  result = { ok: true, details };
} catch (err) {
  const msg = err instanceof ScenarioFailure ? err.message : `${err?.stack ?? err}`;
  result = { ok: false, error: msg, details };
}
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
process.exit(result.ok ? 0 : 1);
