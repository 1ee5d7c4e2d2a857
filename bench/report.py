#!/usr/bin/env python3
"""The side-by-side table of bench/compare.sh: one row per budget figure, one column per
server, and each peer's ratio to Starling (how many times better Starling is, so a ratio above
1 is Starling ahead whichever way the figure points).

    bench/report.py /tmp/starling-bench/results.jsonl [--markdown]
"""
import json
import sys

# (label, step, path into the JSON summary, lower_is_better, unit scale, unit)
FIGURES = [
    ("RSS per idle TLS session (slope)", "connect", "server.rss_slope_bytes_per_session", True, 1 / 1024, "KB"),
    ("concurrent TLS sessions held", "connect", "sessions_held", False, 1, ""),
    ("server CPU per login (accounts logged in before)", "logins", "server.cpu_ms_per_login", True, 1, "ms"),
    ("server CPU per login (first login of each account, 0 → 19.5k)", "connect", "server.cpu_ms_per_login", True, 1, "ms"),
    ("logins per second, 100 in flight", "logins", "logins_per_sec", False, 1, "/s"),
    ("server CPU per delivered message (max rate)", "chat", "server.cpu_us_per_message", True, 1, "µs"),
    ("delivered messages per second (max rate)", "chat", "delivered_per_sec", False, 1, "/s"),
    ("p99 latency at the fixed rate", "latency", "latency_ms.p99", True, 1, "ms"),
    ("p50 latency at the fixed rate", "latency", "latency_ms.p50", True, 1, "ms"),
    ("messages lost at the fixed rate", "latency", "lost", True, 1, ""),
    ("MUC fan-out deliveries per second", "muc", "deliveries_per_sec", False, 1, "/s"),
    ("MUC p99 latency", "muc", "latency_ms.p99", True, 1, "ms"),
]


def dig(d, path):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d if isinstance(d, (int, float)) else None


def short_failure(d):
    reasons = "; ".join(d.get("failure_reasons") or [])
    if "no MUC service" in reasons:
        return "no MUC service"
    if "resource-constraint" in reasons:
        return "joins refused: resource-constraint"
    if d.get("lost"):
        return f"{d['lost']:,} not delivered in time"
    return "failed: " + (reasons[:60] or "see the JSON")


def ratio(x):
    return f"{x:,.0f}×" if x >= 100 else f"{x:.1f}×"


def fmt(v, scale, unit):
    if v is None:
        return "n/a"
    v *= scale
    s = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{s} {unit}".strip()


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    markdown = "--markdown" in sys.argv
    runs = {}
    servers = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            server, step = d.get("server_name"), d.get("step")
            if server not in servers:
                servers.append(server)
            runs[(server, step)] = d
    peers = [s for s in servers if s != "starling"]
    header = ["figure"] + servers + [f"{p} / starling" for p in peers if "starling" in servers]
    rows = []
    for label, step, path, lower, scale, unit in FIGURES:
        vals = {s: dig(runs.get((s, step), {}), path) for s in servers}
        if all(v is None for v in vals.values()):
            continue
        row = [label] + [fmt(vals[s], scale, unit) for s in servers]
        if "starling" in servers:
            ours = vals["starling"]
            for p in peers:
                theirs = vals[p]
                if ours is None or theirs is None or (ours == 0 and theirs == 0):
                    row.append("n/a")
                elif lower:
                    row.append("∞" if ours == 0 else ratio(theirs / ours))
                else:
                    row.append("∞" if theirs == 0 else ratio(ours / theirs))
        rows.append(row)
    failures = [
        f"{s} {st}: {d.get('error') or '; '.join(d.get('failure_reasons') or []) or 'not ok'}"
        for (s, st), d in runs.items()
        if d.get("error") or d.get("ok") is False
    ]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
        for r in [header] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if failures:
        print("\nruns that reported failures or did not finish:")
        for f in failures:
            print("  " + f)
    for s in servers:
        run = runs.get((s, "connect"), {})
        curve = run.get("rss_curve")
        before = dig(run, "server.rss_kb_before")
        if curve:
            start = [{"sessions": 0, "rss_kb": before}] if before is not None else []
            pts = ", ".join(f"{p['sessions']}: {p['rss_kb'] / 1024:.1f} MB" for p in start + curve)
            print(f"RSS curve {s}: {pts}")
    curve_rows = [
        ("max-rate throughput against pairs (delivered/s; server µs/msg)", "pairs-",
         lambda d: f"{fmt(dig(d, 'delivered_per_sec'), 1, '/s')}; {fmt(dig(d, 'server.cpu_us_per_message'), 1, 'µs')}"),
        ("latency against offered rate (p50 / p99; lost)", "rate-",
         lambda d: f"{fmt(dig(d, 'latency_ms.p50'), 1, 'ms')} / {fmt(dig(d, 'latency_ms.p99'), 1, 'ms')}; {d.get('lost', 'n/a')}"),
        ("MUC fan-out against room size (deliveries/s; p99)", "room-",
         lambda d: f"{fmt(dig(d, 'deliveries_per_sec'), 1, '/s')}; {fmt(dig(d, 'latency_ms.p99'), 1, 'ms')}"
         if d.get("ok") else short_failure(d)),
    ]
    for title, prefix, cell in curve_rows:
        points = sorted({int(st[len(prefix):]) for (_, st) in runs if st and st.startswith(prefix)})
        if not points:
            continue
        print(f"\n{title}")
        table = [["point"] + servers]
        for p in points:
            table.append([str(p)] + [cell(runs[(sv, prefix + str(p))]) if (sv, prefix + str(p)) in runs else "n/a" for sv in servers])
        if markdown:
            print("| " + " | ".join(table[0]) + " |")
            print("|" + "---|" * len(table[0]))
            for r in table[1:]:
                print("| " + " | ".join(r) + " |")
        else:
            widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
            for r in table:
                print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
