#!/usr/bin/env python3
"""Plots from bench/compare.sh results as plain SVG (no plotting library needed):
server RSS against idle sessions, and p99 latency against the offered chat rate.

    bench/plot.py /tmp/starling-bench/results.jsonl docs/
"""
import json
import math
import os
import sys

COLORS = {"starling": "#d9480f", "ejabberd": "#1971c2", "prosody": "#2f9e44"}
W, H, PAD = 640, 360, 60


def chart(title, xlabel, ylabel, series, path, log=False):
    """series: {name: [(x, y), ...]}; linear x from 0; y linear from 0, or log10 (values
    spanning several decades, like latencies of servers that keep up and one that does not)."""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    if not xs:
        return
    xmax = max(xs) or 1
    sx = lambda x: PAD + x / xmax * (W - 2 * PAD)
    if log:
        lo = math.floor(math.log10(max(min(y for y in ys if y > 0), 1e-3)))
        hi = math.ceil(math.log10(max(ys)))
        hi = hi if hi > lo else lo + 1
        sy = lambda y: H - PAD - (math.log10(max(y, 10**lo)) - lo) / (hi - lo) * (H - 2 * PAD)
        ticks = [10.0**e for e in range(lo, hi + 1)]
    else:
        ymax = (max(ys) or 1) * 1.1
        sy = lambda y: H - PAD - y / ymax * (H - 2 * PAD)
        ticks = [ymax * i / 4 for i in range(5)]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="black"/>',
           f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>',
           f'<text x="{W / 2}" y="{H - 15}" text-anchor="middle">{xlabel}</text>',
           f'<text x="15" y="{H / 2}" text-anchor="middle" transform="rotate(-90 15 {H / 2})">{ylabel}</text>']
    for y in ticks:
        label = f"{y:,.0f}" if y >= 1 else f"{y:g}"
        out.append(f'<text x="{PAD - 5}" y="{sy(y) + 4}" text-anchor="end">{label}</text>')
        out.append(f'<line x1="{PAD}" y1="{sy(y)}" x2="{W - PAD}" y2="{sy(y)}" stroke="#eee"/>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{sx(x)}" y="{H - PAD + 16}" text-anchor="middle">{x:,.0f}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS.get(name, "black")
        pts = sorted(pts)
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>')
        out.append(f'<text x="{PAD + 10}" y="{PAD + 15 * i}" fill="{color}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {path}")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    runs = {}
    for line in open(sys.argv[1]):
        if line.strip():
            d = json.loads(line)
            runs[(d.get("server_name"), d.get("step"))] = d
    servers = sorted({s for s, _ in runs}, key=lambda s: list(COLORS).index(s) if s in COLORS else 9)
    rss = {}
    for s in servers:
        d = runs.get((s, "connect"), {})
        before = (d.get("server") or {}).get("rss_kb_before")
        pts = [(0, before / 1024)] if before else []
        pts += [(p["sessions"], p["rss_kb"] / 1024) for p in d.get("rss_curve") or []]
        if pts:
            rss[s] = pts
    chart("Server RSS against idle TLS sessions", "sessions", "RSS (MB)", rss,
          os.path.join(sys.argv[2], "rss-curve.svg"))
    lat = {}
    for s in servers:
        pts = []
        for (srv, step), d in runs.items():
            if srv == s and step and step.startswith("rate-") and d.get("latency_ms"):
                pts.append((int(step[5:]), d["latency_ms"]["p99"]))
        if pts:
            lat[s] = pts
    chart("p99 delivery latency against offered rate (1,000 pairs)", "messages/s", "p99 (ms, log scale)", lat,
          os.path.join(sys.argv[2], "latency-curve.svg"), log=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
