#!/usr/bin/env python3
"""The summary table of docs/benchmarks.md from a bench/run-all.sh results directory.

    bench/summary.py DIR                         # print the table
    bench/summary.py DIR --write docs/benchmarks.md

Each scenario's runs are DIR/<name>-r<N>.json (confab-loadtest --json) with their
.loadavg.before/.after; the Janus comparison is DIR/janus-r<N>/{janus,confab}-<listeners>.json.
Figures are medians over the runs (every run's value in brackets), so one disturbed run does
not move them; the table says which commit was measured and the load averages seen.
With --write, the table replaces what lies between the summary markers of the file.
"""

import glob
import json
import os
import re
import statistics
import sys

BEGIN = "<!-- summary:begin (bench/run-all.sh writes this table; edit the script, not the table) -->"
END = "<!-- summary:end -->"


def get(doc, path):
    """A dotted path into a JSON document, or None."""
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc or doc[key] is None:
            return None
        doc = doc[key]
    return doc


def runs(out, name):
    """(document, load before, load after) of each run of `name`, in run order."""
    found = []
    for path in sorted(glob.glob(os.path.join(out, f"{name}-r*.json"))):
        with open(path) as f:
            doc = json.load(f)
        base = path[: -len(".json")]
        loads = []
        for side in ("before", "after"):
            try:
                with open(f"{base}.loadavg.{side}") as f:
                    loads.append(f.read().split()[0])
            except OSError:
                loads.append("?")
        found.append((doc, loads[0], loads[1]))
    return found


def fmt(v, digits):
    if v is None:
        return "n/a"
    if isinstance(v, float) and digits is not None:
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def median(values):
    vals = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def figure(docs, expr, digits=1):
    """Median and the runs' values of `expr`: a dotted path, or a function of a document."""
    vals = [expr(d) if callable(expr) else get(d, expr) for d in docs]
    m = median(vals)
    each = ", ".join(fmt(v, digits) for v in vals)
    return f"**{fmt(m, digits)}** ({each})" if len(vals) > 1 else f"**{fmt(m, digits)}**"


def kib(d, path):
    v = get(d, path)
    return None if v is None else v / 1024


def mb(d, path):
    v = get(d, path)
    return None if v is None else v / 1e6


def ratio(d, num, den):
    a, b = get(d, num), get(d, den)
    return None if not a or not b else a / b


# (scenario, what, [(label, expr, digits)], target)
ROWS = [
    ("voice-400", "voice, 1 room, 3 speakers × 400 listeners", [
        ("server µs CPU / fwd pkt", "server.sfu_cpu_us_per_forwarded_packet", 2),
        ("loss %", "voice.loss_percent", 2),
        ("one-way p99 ms", "voice.latency_ms.p99", 1),
        ("tester µs / recv pkt", "loadtest.cpu_us_per_received_packet", 2),
    ], "≤ 5 µs/pkt"),
    ("voice-1500", "voice, 1 room, 3 speakers × 1,500 listeners", [
        ("loss %", "voice.loss_percent", 2),
        ("one-way p99 ms", "voice.latency_ms.p99", 1),
        ("server µs CPU / fwd pkt", "server.sfu_cpu_us_per_forwarded_packet", 2),
        ("tester µs / recv pkt", "loadtest.cpu_us_per_received_packet", 2),
    ], "< 1 % loss, p99 < 50 ms, ≤ 5 µs/pkt; tester ≤ 3 µs/pkt"),
    ("small-rooms", "voice, 50 rooms × (2 speakers + 8 listeners)", [
        ("server µs CPU / fwd pkt", "server.sfu_cpu_us_per_forwarded_packet", 2),
        ("loss %", "voice.loss_percent", 2),
        ("join p99 ms", "voice.join_ms.p99", 0),
    ], "≤ 8 µs/pkt, 0 % loss, join p99 < 500 ms"),
    ("join-storm", "voice, 2,000 peers joining at 50/s", [
        ("joined", "voice.joined", 0),
        ("join p99 ms", "voice.join_ms.p99", 0),
        ("server RSS MB", lambda d: mb(d, "server.rss_bytes"), 0),
    ], "all join, p99 < 1 s, RSS < 600 MB"),
    ("chat-peak", "chat, 10 listeners, as fast as it goes", [
        ("persisted msg/s", lambda d: ratio(d, "chat.messages_persisted", "chat.duration_s"), 0),
        ("lost", "chat.lost", 0),
        ("deliver p99 ms", "chat.deliver_ms.p99", 1),
    ], "≥ 20,000 msg/s, 0 lost"),
    ("chat-fanout", "chat, 500 msg/s to 1,000 clients", [
        ("deliver p99 ms", "chat.deliver_ms.p99", 1),
        ("deliveries/s", "chat.deliveries_per_second", 0),
        ("lost", "chat.lost", 0),
    ], "p99 < 50 ms, 0 lost"),
    ("idle-100", "idle gateway connections, 100-member server", [
        ("KiB per connection", lambda d: kib(d, "chat.server_rss_bytes_per_connection"), 1),
    ], "≤ 10 KiB"),
    ("idle-10k", "idle gateway connections, 10,000-member server (100 online)", [
        ("KiB per connection", lambda d: kib(d, "chat.server_rss_bytes_per_connection"), 1),
    ], "≤ 12 KiB"),
    ("video-2x200", "video, 2 publishers × 200 viewers, mixed tiles", [
        ("loss %", "video.loss_percent", 2),
        ("server µs CPU / fwd pkt", "server.sfu_cpu_us_per_forwarded_packet", 2),
        ("wrong layer", "video.wrong_layer", 0),
    ], "< 1 % loss"),
    ("golive-200", "Go Live, 1080p60 (3 layers) × 200 viewers", [
        ("fps p50", "video.frames_per_second.p50", 1),
        ("loss %", "video.loss_percent", 2),
        ("viewers on their tile's layer", lambda d: (get(d, "video.joined") or 1) - 1 - (get(d, "video.wrong_layer") or 0), 0),
        ("server µs CPU / fwd pkt", "server.sfu_cpu_us_per_forwarded_packet", 2),
        ("keyframe req/s", "video.keyframe_requests_per_second", 2),
    ], "< 1 % loss"),
]


def janus_rows(out):
    """Rows of the Janus comparison at each listener count tried."""
    dirs = sorted(glob.glob(os.path.join(out, "janus-r*")))
    dirs = [d for d in dirs if os.path.isdir(d)]
    if not dirs:
        return []
    counts = sorted({int(m.group(1)) for d in dirs for p in glob.glob(os.path.join(d, "confab-*.json"))
                     if (m := re.search(r"confab-(\d+)\.json$", p))})
    rows = []
    for n in counts:
        pairs = []
        for d in dirs:
            try:
                with open(os.path.join(d, f"janus-{n}.json")) as f:
                    j = json.load(f)
                with open(os.path.join(d, f"confab-{n}.json")) as f:
                    c = json.load(f)
            except OSError:
                continue
            pairs.append((j, c))
        if not pairs:
            continue
        key = "server.sfu_cpu_us_per_received_packet"
        ratios = [ratio({"a": get(j, key), "b": get(c, key)}, "a", "b") for j, c in pairs]
        cells = [
            f"ratio Janus/Confab CPU per packet {figure([{'r': r} for r in ratios], 'r', 2)}",
            f"loss % Janus {figure([j for j, _ in pairs], 'voice.loss_percent', 2)}",
            f"Confab {figure([c for _, c in pairs], 'voice.loss_percent', 2)}",
        ]
        rows.append(f"| Janus side by side, 3 speakers × {n} listeners | {'; '.join(cells)} | ≥ 3.5× at 400 | `janus` |")
    return rows


def table(out):
    def read(name):
        try:
            with open(os.path.join(out, name)) as f:
                return f.read().strip()
        except OSError:
            return "?"

    lines = [
        BEGIN,
        f"Commit `{read('commit')}`, started {read('started')}; medians of the runs, each run's value in",
        "brackets; 1-minute load average before → after each run in the last column.",
        "",
        "| what | figures | target | scenario (`bench/run-all.sh --list`), load |",
        "|---|---|---|---|",
    ]
    for name, what, cols, target in ROWS:
        found = runs(out, name)
        if not found:
            continue
        docs = [d for d, _, _ in found]
        cells = "; ".join(f"{label} {figure(docs, expr, digits)}" for label, expr, digits in cols)
        loads = ", ".join(f"{b}→{a}" for _, b, a in found)
        lines.append(f"| {what} | {cells} | {target} | `{name}`, {loads} |")
    lines.extend(janus_rows(out))
    lines.append(END)
    return "\n".join(lines)


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 64
    out = argv[0]
    text = table(out)
    if len(argv) >= 3 and argv[1] == "--write":
        path = argv[2]
        with open(path) as f:
            doc = f.read()
        if BEGIN in doc and END in doc:
            start, end = doc.index(BEGIN), doc.index(END) + len(END)
            doc = doc[:start] + text + doc[end:]
        else:
            # First time: after the page's opening paragraph.
            cut = doc.index("\n## ")
            doc = doc[:cut] + "\n\n## Latest figures\n\n" + text + "\n" + doc[cut:]
        with open(path, "w") as f:
            f.write(doc)
        print(f"summary written to {path}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
