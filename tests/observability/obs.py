#!/usr/bin/env python3
"""Helpers for tests/observability/validate.sh (standard library only, plus PyYAML for alerts.yml).

Subcommands (each prints `PASS ...` / `FAIL ...` lines; validate.sh counts them):
  static ROOT                 dashboards' structure; metric names vs docs/metrics.md; rule annotations
  exprs ROOT                  print every dashboard PromQL expression, variables substituted, as JSON lines
  traffic BASE_URL            register/login, REST calls, a message, a gateway IDENTIFY over a raw WebSocket
  cluster-traffic A_URL B_URL  two nodes of one cluster: a user's gateway on B gets the messages
                              posted through A (cross-node deliveries, timed on B)
  cluster-evaluate ROOT PROM_URL NODE_A NODE_B
                              the node dashboard's Cluster row has data from both nodes, the
                              cross-node latency (a cluster-only panel) included
  node-down ROOT PROM_URL NODE  NODE was stopped: the Cluster row counts it down and ConfabNodeDown
                              fires for it
  evaluate ROOT PROM_URL [--require-data] [--node NAME]
                              evaluate every dashboard expression against Prometheus; core series
                              checks. --require-data: every expression must return a non-NaN sample,
                              except those of panels marked `confabClusterOnly` (empty on a single
                              node), whose series must be exported instead. --node: the node name
                              Confab was started with; every confab_*/process_* series must carry it
"""

import base64
import glob
import json
import os
import re
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DASHBOARDS = ["confab-voice.json", "confab-chat.json", "confab-node.json"]

# Grafana variables → values valid against the test Prometheus (job "confab", any instance).
# `$node` becomes ".+" (the dashboards' "All" is ".*"): every filtered series must have a node.
SUBST = [
    ("${node}", ".+"),
    ("$node", ".+"),
    ("${__rate_interval}", "1m"),
    ("$__rate_interval", "1m"),
    ("${__interval}", "1m"),
    ("$__interval", "1m"),
    ("${__range}", "1h"),
    ("$__range", "1h"),
    ("${job}", "confab"),
    ("$job", "confab"),
    ("${instance}", ".+"),
    ("$instance", ".+"),
]

# Series Prometheus itself creates for a scrape target: not Confab metrics, allowed by name.
PROMETHEUS_SERIES = {"up"}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "atan2", "start", "end",
}

results = {"pass": 0, "fail": 0}


def ok(msg):
    results["pass"] += 1
    print(f"PASS {msg}", flush=True)


def bad(msg):
    results["fail"] += 1
    print(f"FAIL {msg}", flush=True)


def check(cond, msg):
    (ok if cond else bad)(msg)
    return cond


def substitute(expr):
    for k, v in SUBST:
        expr = expr.replace(k, v)
    return expr


# --------------------------------------------------------------------------------------------
# Collecting expressions


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard_exprs(root):
    """(dashboard, where, expr, kind, cluster_only) for every PromQL expression in the dashboards.
    kind: 'expr' (a query) or 'label_values' (a variable query: its selector is evaluated).
    cluster_only: the panel is marked `confabClusterOnly` (its series stay empty on one node)."""
    out = []
    for name in DASHBOARDS:
        with open(os.path.join(root, "grafana", "dashboards", name)) as f:
            d = json.load(f)
        for p in walk_panels(d.get("panels", [])):
            for t in p.get("targets", []):
                if "expr" in t:
                    out.append((name, f"panel {p.get('title')!r} {t.get('refId')}", t["expr"], "expr",
                                p.get("confabClusterOnly") is True))
        for a in d.get("annotations", {}).get("list", []):
            if a.get("expr"):
                out.append((name, f"annotation {a.get('name')!r}", a["expr"], "expr", False))
        for v in d.get("templating", {}).get("list", []):
            if v.get("type") != "query":
                continue
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", q or "")
            if m:
                out.append((name, f"variable {v['name']!r}", m.group(1), "label_values", False))
            else:
                out.append((name, f"variable {v['name']!r}", q, "expr", False))
    return out


def rule_exprs(root):
    import yaml  # validate.sh installs python3-yaml when missing

    with open(os.path.join(root, "grafana", "alerts.yml")) as f:
        doc = yaml.safe_load(f)
    rules = []
    for g in doc["groups"]:
        for r in g["rules"]:
            rules.append(r)
    return rules


# --------------------------------------------------------------------------------------------
# Metric names in PromQL (a tokenizer good enough for the expressions we write)

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
TOKEN = re.compile(
    r"(?P<num>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?)"
    r"|(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?"
)


def metric_names(expr):
    e = STRING.sub('""', substitute(expr))
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = GROUPING.sub("", e)
    names = set()
    for m in TOKEN.finditer(e):
        ident = m.group("ident")
        if not ident or m.group("call") or ident.lower() in KEYWORDS:
            continue
        names.add(ident)
    return names


SELECTOR = re.compile(r'\{(?:"(?:[^"\\]|\\.)*"|[^}"])*\}')


def unfiltered_by_node(expr, skip):
    """Occurrences of metrics in `expr` whose selector does not filter on `node=~"$node"`
    (names in `skip` — recording rules, `up` — excepted)."""
    out = []
    for n in sorted(metric_names(expr) - skip):
        for m in re.finditer(r"(?<![a-zA-Z0-9_:])" + re.escape(n) + r"(?![a-zA-Z0-9_:])", expr):
            sel = SELECTOR.match(expr, m.end())
            if not sel or 'node=~"$node"' not in sel.group(0):
                out.append(n)
    return out


def documented_names(root):
    """(all names mentioned in docs/metrics.md, names its tables list as histograms)."""
    with open(os.path.join(root, "docs", "metrics.md")) as f:
        text = f.read()
    names = set(re.findall(r"\b((?:confab|process)_[a-z0-9_]+)\b", text))
    histograms = set(re.findall(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*histogram\s*\|", text, re.M))
    return names, histograms


# --------------------------------------------------------------------------------------------
def cmd_static(root):
    # Dashboards: JSON, schema, datasource variable, units, unique ids.
    uids = set()
    for name in DASHBOARDS:
        path = os.path.join(root, "grafana", "dashboards", name)
        try:
            with open(path) as f:
                d = json.load(f)
        except Exception as e:  # noqa: BLE001
            bad(f"{name}: not valid JSON: {e}")
            continue
        ok(f"{name}: valid JSON")
        check(isinstance(d.get("schemaVersion"), int) and 36 <= d["schemaVersion"] <= 41,
              f"{name}: schemaVersion {d.get('schemaVersion')} in 36..41")
        check(d.get("uid") and d["uid"] not in uids, f"{name}: unique uid {d.get('uid')!r}")
        uids.add(d.get("uid"))
        tvars = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        dsv = tvars.get("datasource", {})
        check(dsv.get("type") == "datasource" and dsv.get("query") == "prometheus",
              f"{name}: template variable `datasource` of type datasource / prometheus")
        nv = tvars.get("node", {})
        nq = nv.get("query")
        nq = nq.get("query") if isinstance(nq, dict) else nq
        check(nv.get("type") == "query" and nv.get("multi") is True and nv.get("includeAll") is True
              and re.search(r",\s*node\s*\)\s*$", nq or "") is not None,
              f"{name}: template variable `node` (label_values(…, node), multi-select, with All)")
        problems = []
        units = set()
        n_panels = 0
        for p in walk_panels(d.get("panels", [])):
            if p.get("type") == "row":
                continue
            n_panels += 1
            title = p.get("title")
            if p.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
                problems.append(f"panel {title!r}: datasource is not ${{datasource}}")
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    problems.append(f"panel {title!r} {t.get('refId')}: target datasource is not ${{datasource}}")
                if not t.get("expr"):
                    problems.append(f"panel {title!r} {t.get('refId')}: empty expr")
            if not p.get("targets"):
                problems.append(f"panel {title!r}: no targets")
            if p.get("type") in ("timeseries", "stat", "gauge", "bargauge"):
                unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
                if not unit:
                    problems.append(f"panel {title!r}: no unit")
                units.add(unit)
                thr = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
                if not thr:
                    problems.append(f"panel {title!r}: no thresholds")
            if "gridPos" not in p:
                problems.append(f"panel {title!r}: no gridPos")
        check(not problems and n_panels > 0,
              f"{name}: {n_panels} panels use ${{datasource}}, have units and thresholds"
              + ("" if not problems else ": " + "; ".join(problems)))
        print(f"INFO {name}: units used: {', '.join(sorted(u for u in units if u))}")
        ids = [p.get("id") for p in walk_panels(d.get("panels", []))]
        check(len(ids) == len(set(ids)), f"{name}: panel ids unique")

    # Metric names: dashboards and rules use only documented metrics (or recording rules).
    documented, histograms = documented_names(root)
    # The name extractor itself: it must find metric names and skip functions, labels, keywords.
    probe = metric_names('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y_z"}[5m]))) > 1e-3 '
                         'and on (instance) b offset 5m / ignoring(kind) c:d:e')
    check(probe == {"a_bucket", "b", "c:d:e"}, f"metric-name extractor self-test ({sorted(probe)})")
    probe = unfiltered_by_node('sum(rate(a{job="x", node=~"$node"}[1m])) / b{route="/{id}", job="x"} + c '
                               'and on (job) up{job="x"}', {"up"})
    check(probe == ["b", "c"], f"node-filter checker self-test ({probe})")
    check(len(histograms) >= 5, f"docs/metrics.md lists {len(histograms)} histograms")
    rules = rule_exprs(root)
    recorded = {r["record"] for r in rules if "record" in r}
    for r in recorded:
        check(re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", r) is not None,
              f"recording rule {r} is named level:metric:operations")

    def known(n):
        if n in documented or n in PROMETHEUS_SERIES or n in recorded:
            return True
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        return base != n and base in histograms

    used = {}
    unfiltered = []
    for dash, where, expr, kind, _ in dashboard_exprs(root):
        for n in metric_names(expr):
            used.setdefault(n, []).append(f"{dash} {where}")
        # Variable queries list the nodes (or feed the node filter); every panel and annotation
        # filters each Confab metric it reads by the selected nodes.
        if not where.startswith("variable"):
            for n in unfiltered_by_node(expr, recorded | PROMETHEUS_SERIES):
                unfiltered.append(f"{dash} {where}: {n}")
    check(not unfiltered, 'every metric selector in panels and annotations filters node=~"$node"'
          + ("" if not unfiltered else ": missing in " + "; ".join(unfiltered)))
    for r in rules:
        for n in metric_names(str(r["expr"])):
            used.setdefault(n, []).append(f"alerts.yml {r.get('alert') or r.get('record')}")
    unknown = {n: w for n, w in used.items() if not known(n)}
    check(len(used) > 20, f"found {len(used)} distinct metric names in dashboards and rules")
    if unknown:
        for n, w in sorted(unknown.items()):
            bad(f"metric {n} is not in docs/metrics.md (used by {w[0]}{' …' if len(w) > 1 else ''})")
    else:
        ok("every metric name in the dashboards and alerts.yml appears in docs/metrics.md "
           "(or is `up` / a recording rule from alerts.yml)")
    base_used = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    unused = sorted(n for n in documented if n not in base_used and n not in used)
    print(f"INFO documented metrics not on any dashboard or rule: {', '.join(unused) or 'none'}")

    # Rules: alert annotations and severity.
    problems = []
    n_alerts = 0
    for r in rules:
        if "alert" not in r:
            continue
        n_alerts += 1
        ann = r.get("annotations", {})
        for k in ("summary", "description", "runbook"):
            if not str(ann.get(k, "")).strip():
                problems.append(f"{r['alert']}: no {k}")
        if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{r['alert']}: severity label missing or unknown")
    check(not problems and n_alerts > 0,
          f"{n_alerts} alerts have summary, description, runbook and severity"
          + ("" if not problems else ": " + "; ".join(problems)))
    required = {
        "ConfabDown", "ConfabNotReady", "ConfabVoiceReceiveLossHigh", "ConfabForwardLatencyHigh",
        "ConfabIceConnectFailures", "ConfabSfuSaturated", "ConfabGatewayRefusedFramesHigh",
        "ConfabGatewaySlowDisconnectsHigh", "ConfabHttpErrorBudgetBurnFast",
        "ConfabHttpErrorBudgetBurnSlow", "ConfabDbPoolExhausted", "ConfabBusDisconnected",
        "ConfabNodeDown",
    }
    have = {r.get("alert") for r in rules}
    check(required <= have, "all required alerts are defined"
          + ("" if required <= have else f": missing {sorted(required - have)}"))


# --------------------------------------------------------------------------------------------
# Traffic


def http(method, url, body=None, token=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw)
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class WebSocket:
    """A minimal RFC 6455 client: enough to IDENTIFY on the gateway (text frames, no extensions)."""

    def __init__(self, host, port, path):
        self.sock = socket.create_connection((host, port), timeout=15)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise IOError("connection closed during handshake")
            head += chunk
        status, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in status.split(b"\r\n")[0]:
            raise IOError(f"handshake refused: {status.splitlines()[0]!r}")

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise IOError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if op == 0x1:
                return json.loads(payload)
            if op == 0x8:
                raise IOError(f"closed by server: {payload[:2].hex()} {payload[2:]!r}")
            if op == 0x9:
                self._send(0xA, payload)

    def _send(self, op, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | op])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, obj):
        self._send(0x1, json.dumps(obj).encode())

    def close(self):
        try:
            self._send(0x8, struct.pack(">H", 1000))
            self.sock.close()
        except OSError:
            pass


def cmd_traffic(base):
    api = base.rstrip("/") + "/api/v1"
    user = f"obs{int(time.time() * 1000) % 10**9}"
    pw = "observability-check-pw"
    st, reg = http("POST", f"{api}/auth/register", {"username": user, "password": pw})
    if not check(st == 201 and isinstance(reg, dict) and reg.get("token"), f"register a user over REST (HTTP {st})"):
        return
    st, login = http("POST", f"{api}/auth/login", {"username": user, "password": pw})
    check(st == 200, f"log in (HTTP {st})")
    token = (login if st == 200 else reg)["token"]
    st, _ = http("GET", f"{api}/users/@me", token=token)
    check(st == 200, f"GET /users/@me (HTTP {st})")
    st, _ = http("GET", f"{api}/users/@me")
    check(st == 401, f"GET /users/@me without a token is refused (HTTP {st})")
    st, _ = http("GET", f"{api}/no-such-route")
    check(st == 404, f"unknown route answers 404 (HTTP {st})")
    st, server = http("POST", f"{api}/servers", {"name": "observability"}, token=token)
    channel = None
    if check(st in (200, 201) and isinstance(server, dict), f"create a server (HTTP {st})"):
        st, chans = http("GET", f"{api}/servers/{server['id']}/channels", token=token)
        channel = next((c["id"] for c in chans if c.get("type") == "text"), None) if st == 200 else None
        check(channel is not None, "the new server has a text channel")

    # Gateway: HELLO → IDENTIFY → READY, then a message while connected (one MESSAGE_CREATE dispatch).
    u = urllib.parse.urlparse(base)
    try:
        ws = WebSocket(u.hostname, u.port or 80, "/api/v1/gateway")
        hello = ws.recv()
        check(hello.get("op") == 10, f"gateway HELLO (op {hello.get('op')})")
        ws.send({"op": 2, "d": {"token": token}})
        ready = None
        deadline = time.time() + 15
        while time.time() < deadline:
            f = ws.recv()
            if f.get("op") == 0 and f.get("t") == "READY":
                ready = f
                break
        check(ready is not None, "gateway IDENTIFY → READY")
        if channel:
            st, _ = http("POST", f"{api}/channels/{channel}/messages", {"content": "metrics check"}, token=token)
            check(st in (200, 201), f"post a message (HTTP {st})")
            got = None
            deadline = time.time() + 10
            while time.time() < deadline:
                f = ws.recv()
                if f.get("op") == 0 and f.get("t") == "MESSAGE_CREATE":
                    got = f
                    break
            check(got is not None, "gateway dispatches MESSAGE_CREATE")
        ws.close()
    except (OSError, ValueError) as e:
        bad(f"gateway session: {e}")

    # A few more API calls spread over several scrapes: counters that first appeared above now
    # increase while Prometheus watches, so rate() over them is non-zero.
    codes = []
    for _ in range(4):
        time.sleep(1.2)
        codes.append(http("GET", f"{api}/users/@me", token=token)[0])
        codes.append(http("GET", f"{api}/users/@me")[0])
        codes.append(http("GET", f"{api}/no-such-route")[0])
    check(codes == [200, 401, 404] * 4, f"repeated API calls over several scrapes ({codes})")


def cmd_cluster_traffic(a_url, b_url):
    """A user posts through node A while connected to node B's gateway: each message crosses
    NATS from A to B (B times it in confab_bus_delivery_seconds)."""
    api_a = a_url.rstrip("/") + "/api/v1"
    user = f"obsc{int(time.time() * 1000) % 10**9}"
    st, reg = http("POST", f"{api_a}/auth/register", {"username": user, "password": "observability-check-pw"})
    if not check(st == 201 and isinstance(reg, dict), f"register a user through node A (HTTP {st})"):
        return
    token = reg["token"]
    st, server = http("POST", f"{api_a}/servers", {"name": "cluster"}, token=token)
    if not check(st in (200, 201), f"create a server through node A (HTTP {st})"):
        return
    st, chans = http("GET", f"{api_a}/servers/{server['id']}/channels", token=token)
    channel = next((c["id"] for c in chans if c.get("type") == "text"), None) if st == 200 else None
    if not check(channel is not None, "the new server has a text channel"):
        return
    u = urllib.parse.urlparse(b_url)
    try:
        ws = WebSocket(u.hostname, u.port or 80, "/api/v1/gateway")
        ws.recv()  # HELLO
        ws.send({"op": 2, "d": {"token": token}})
        deadline = time.time() + 15
        ready = False
        while time.time() < deadline and not ready:
            f = ws.recv()
            ready = f.get("op") == 0 and f.get("t") == "READY"
        check(ready, "gateway IDENTIFY → READY on node B with node A's token")
        got = 0
        # One message a second for 10 s: over several scrapes, so rate() over them is non-zero.
        for i in range(10):
            st, _ = http("POST", f"{api_a}/channels/{channel}/messages", {"content": f"cross {i}"}, token=token)
            deadline = time.time() + 10
            while st in (200, 201) and time.time() < deadline:
                f = ws.recv()
                if f.get("op") == 0 and f.get("t") == "MESSAGE_CREATE":
                    got += 1
                    break
            time.sleep(1)
        check(got == 10, f"10 messages posted through node A reached the gateway on node B ({got})")
        ws.close()
    except (OSError, ValueError) as e:
        bad(f"gateway session on node B: {e}")


def row_exprs(root, dashboard, row_title):
    """(panel title, refId, expr, cluster_only) of the panels under one row of a dashboard."""
    with open(os.path.join(root, "grafana", "dashboards", dashboard)) as f:
        d = json.load(f)
    out, inside = [], False
    for p in d.get("panels", []):
        if p.get("type") == "row":
            inside = p.get("title") == row_title
            continue
        if inside:
            for t in p.get("targets", []):
                out.append((p.get("title"), t.get("refId"), t["expr"], p.get("confabClusterOnly") is True))
    return out


def instant(prom, expr):
    res = prom_query(prom, expr)
    if res.get("status") != "success":
        return None
    return {r["metric"].get("node", ""): float(r["value"][1]) for r in res["data"]["result"]}


def cmd_cluster_evaluate(root, prom, node_a, node_b):
    exprs = row_exprs(root, "confab-node.json", "Cluster")
    check(len(exprs) >= 10, f"the node dashboard's Cluster row has {len(exprs)} queries")
    for title, ref, expr, cluster_only in exprs:
        q = substitute(expr)
        res = prom_query(prom, q)
        ok_ = res.get("status") == "success" and res["data"]["result"] and has_number(res["data"])
        check(ok_, f"Cluster row {title!r} {ref}{' (cluster-only)' if cluster_only else ''}: returns data"
              + ("" if ok_ else f" — `{q}`"))
    sel = 'job="confab"'
    probes = [
        (f"count(max by (node) (confab_build_info{{{sel}}}))", lambda r: r.get("") == 2, "two nodes up"),
        # Over the last 5 s, not the last sample: on a busy machine one scrape of a node can miss
        # its 1 s timeout, and the instant query then has no series for that node at all.
        (f"max by (node) (max_over_time(confab_bus_connected{{{sel}}}[5s]))",
         lambda r: r.get(node_a) == 1 and r.get(node_b) == 1, "both nodes connected to NATS"),
        (f"sum by (node) (rate(confab_bus_published_total{{{sel}}}[1m]))", lambda r: r.get(node_a, 0) > 0,
         f"{node_a} publishes on the bus"),
        (f"sum by (node) (rate(confab_bus_received_total{{{sel}}}[1m]))", lambda r: r.get(node_b, 0) > 0,
         f"{node_b} receives from the bus"),
        (f"max by (node) (max_over_time(confab_gateway_sessions{{{sel}}}[2m]))", lambda r: r.get(node_b, 0) >= 1,
         f"{node_b} held the gateway session"),
        (f"histogram_quantile(0.99, sum by (le, node) (rate(confab_bus_delivery_seconds_bucket{{{sel}}}[1m])))",
         lambda r: 0 < r.get(node_b, float("nan")) < 1, f"cross-node delivery p99 on {node_b} in (0, 1 s)"),
    ]
    for expr, pred, label in probes:
        r = instant(prom, expr)
        check(r is not None and pred(r), f"live cluster: {label} (`{expr}` = {r})")


def cmd_node_down(root, prom, node):
    """Waits (up to 150 s) for ConfabNodeDown to fire for `node`, then checks the Cluster row."""
    firing = []
    deadline = time.time() + 150
    while time.time() < deadline:
        with urllib.request.urlopen(prom.rstrip("/") + "/api/v1/alerts", timeout=30) as r:
            alerts = json.load(r)["data"]["alerts"]
        firing = [a["labels"] for a in alerts
                  if a["labels"].get("alertname") == "ConfabNodeDown" and a.get("state") == "firing"]
        if firing:
            break
        time.sleep(2)
    check([a.get("node") for a in firing] == [node],
          f"live cluster: ConfabNodeDown fires for {node} alone ({[a.get('node') for a in firing]})")
    by_title = {(t, ref): substitute(e) for t, ref, e, _ in row_exprs(root, "confab-node.json", "Cluster")}
    down = instant(prom, by_title[("Nodes down", "A")])
    check(down == {"": 1.0}, f"live cluster: the Cluster row's Nodes down is 1 ({down})")
    up = instant(prom, by_title[("Nodes up", "A")])
    check(up == {"": 1.0}, f"live cluster: the Cluster row's Nodes up is 1 ({up})")
    status = instant(prom, by_title[("Node status", "A")])
    check(status is not None and status.get(node) == 0 and len(status) == 2,
          f"live cluster: Node status shows {node} DOWN (0) beside the other node ({status})")


# --------------------------------------------------------------------------------------------
def prom_query(prom, expr):
    url = prom.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        try:
            return json.loads(e.read())
        except ValueError:
            return {"status": "error", "errorType": f"http {e.code}", "error": ""}


def has_number(data):
    """Whether an instant-query result holds at least one sample that is a number (not NaN)."""
    if data["resultType"] == "vector":
        return any(r["value"][1].lower() != "nan" for r in data["result"])
    if data["resultType"] == "matrix":
        return any(v[1].lower() != "nan" for r in data["result"] for v in r["values"])
    return data["result"][1].lower() != "nan"  # scalar / string


def cmd_evaluate(root, prom, require_data=False, node=None):
    exprs = dashboard_exprs(root)
    per_dash = {}
    empty_list = []
    for dash, where, expr, kind, cluster_only in exprs:
        q = substitute(expr)
        res = prom_query(prom, q)
        if res.get("status") != "success":
            bad(f"{dash} {where}: {res.get('errorType')}: {res.get('error')} in `{q}`")
            continue
        data = res["data"]
        n = len(data["result"]) if data["resultType"] in ("vector", "matrix") else 1
        numeric = n > 0 and has_number(data)
        stats = per_dash.setdefault(dash, [0, 0, 0])
        stats[0] += 1
        stats[1 if numeric else 2] += 1
        if not numeric:
            empty_list.append(f"{dash} {where}" + (" (NaN only)" if n else ""))
        # The restart annotation (changes(...) > 0) is empty on a process that did not restart.
        if where.startswith("annotation"):
            continue
        if require_data and cluster_only and not numeric:
            # Empty on a single node (nothing crosses nodes): its series must still be exported,
            # with a node label.
            names = sorted(metric_names(q))
            missing = [n for n in names
                       if not prom_query(prom, f'count({{__name__="{n}", job="confab", node=~".+"}})')
                       .get("data", {}).get("result")]
            check(names and not missing,
                  f"{dash} {where}: cluster-only panel, no data on one node; its series "
                  f"{', '.join(names)} are exported" + ("" if not missing else f" — missing: {missing}"))
        elif require_data:
            check(numeric, f"{dash} {where}: returns data" + ("" if numeric else f" — empty or NaN: `{q}`"))
        elif dash == "confab-node.json":
            # Every node-health query reads series that exist from the first scrape.
            check(n > 0, f"{dash} {where}: returns data")
    for dash, (total, with_data, empty) in sorted(per_dash.items()):
        ok(f"{dash}: {total} expressions evaluated by Prometheus without error "
           f"({with_data} with data, {empty} empty or NaN)")
    if empty_list:
        print("INFO empty or NaN: " + "; ".join(empty_list))

    def value(expr):
        res = prom_query(prom, expr)
        if res.get("status") != "success" or not res["data"]["result"]:
            return None
        return float(res["data"]["result"][0]["value"][1])

    core = [
        ('up{job="confab"}', lambda v: v == 1, "up{job=\"confab\"} == 1"),
        ('sum(confab_http_requests_total{job="confab", route="/api/v1/auth/register", status="201"})', lambda v: v >= 1, ">= 1 registration counted"),
        # An unknown API path is labelled with the catch-all route template, not `unmatched`.
        ('sum(confab_http_requests_total{job="confab", route=~"/api/v1/.*", status="404"})', lambda v: v >= 1, ">= 1 API 404 counted"),
        ('sum(confab_http_requests_total{job="confab", route="/api/v1/users/@me", status="401"})', lambda v: v >= 1, ">= 1 API 401 counted"),
        ('sum(confab_http_request_duration_seconds_count{job="confab", route="/api/v1/users/@me"})', lambda v: v >= 1, "request duration histogram has /users/@me"),
        ('process_cpu_seconds_total{job="confab"}', lambda v: v > 0, "process_cpu_seconds_total > 0"),
        ('process_resident_memory_bytes{job="confab"}', lambda v: v > 1e6, "process_resident_memory_bytes > 1 MB"),
        ('process_open_fds{job="confab"} < process_max_fds{job="confab"}', lambda v: v > 0, "open fds below max"),
        ('time() - process_start_time_seconds{job="confab"}', lambda v: 0 < v < 3600, "uptime is positive and recent"),
        ('confab_db_pool_max_connections{job="confab"}', lambda v: v > 0, "DB pool size exported"),
        ('sum(confab_db_pool_connections{job="confab"})', lambda v: v >= 1, "DB pool has connections"),
        ('confab_gateway_identifies_total{job="confab"}', lambda v: v >= 1, "gateway IDENTIFY counted"),
        ('confab_gateway_connections_total{job="confab"}', lambda v: v >= 1, "gateway connection counted"),
        ('confab_gateway_dispatches_total{job="confab"}', lambda v: v >= 1, "gateway dispatches counted"),
        ('confab_messages_created_total{job="confab"}', lambda v: v >= 1, "message creation counted"),
        ('count(confab_sfu_packets_dropped_total{job="confab"})', lambda v: v >= 1, "SFU drop counters exported"),
        ('count(confab_sfu_forward_latency_seconds_bucket{job="confab"})', lambda v: v >= 10, "forward-latency histogram buckets exported"),
        ('confab_sfu_rooms{job="confab"}', lambda v: v >= 0, "SFU rooms gauge exported"),
        ('max_over_time(confab_sfu_participants{job="confab"}[5m])', lambda v: v >= 5, "the load test's voice peers were in the SFU"),
        ('sum(increase(confab_sfu_packets_forwarded_total{job="confab", kind="audio"}[5m]))', lambda v: v > 100, "audio packets forwarded during the load test"),
        ('increase(confab_sfu_loop_iterations_total{job="confab"}[5m])', lambda v: v > 0, "SFU loop iterations counted"),
        ('max_over_time(rate(confab_sfu_loop_busy_seconds_total{job="confab"}[15s])[5m:1s])', lambda v: 0 < v < 1, "SFU loop busy ratio in (0, 1) during the load"),
        ('count(confab_build_info{job="confab"} == 1)', lambda v: v == 1, "confab_build_info = 1"),
        ('count(confab_http_rate_limited_total{job="confab"})', lambda v: v >= 4, "rate-limit counters zero-initialised per bucket"),
        ('count(confab_voice_leaves_total{job="confab"})', lambda v: v >= 5, "voice leave counters zero-initialised per reason"),
        # The traffic repeats API calls after the first scrapes, so the ratio is a number (0), not NaN.
        ('confab:http_errors:ratio_rate5m{job="confab"}', lambda v: v == 0, "recording rule confab:http_errors:ratio_rate5m = 0 (no 5xx)"),
        ('confab:http_errors:ratio_rate1h{job="confab"}', lambda v: v == 0, "recording rule confab:http_errors:ratio_rate1h = 0 (no 5xx)"),
        ('count(confab:sfu_forward_latency_seconds:p99_5m{job="confab"})', lambda v: v == 1, "recording rule confab:sfu_forward_latency_seconds:p99_5m evaluated"),
    ]
    for expr, pred, label in core:
        v = value(expr)
        check(v is not None and pred(v), f"live: {label} (`{expr}` = {v})")

    # The node label: on every Confab and process series (the recorder's global label and the
    # text rendered beside it), with the name Confab was started with.
    ours = '__name__=~"confab_.+|process_.+", job="confab"'
    v = value(f'count({{{ours}, node=""}})')
    check(v is None, f"live: no confab_*/process_* series without a node label ({v or 0} found)")
    if node:
        n_all = value(f"count({{{ours}}})")
        n_node = value(f'count({{{ours}, node="{node}"}})')
        check(n_all and n_node == n_all,
              f'live: all {n_all} confab_*/process_* series carry node="{node}" ({n_node})')
        names = value(f'count(count by (__name__) ({{{ours}, node="{node}"}}))')
        check(names is not None and names >= 60, f'live: {names} metric names carry node="{node}"')
        v = value(f'count(confab_build_info{{job="confab", node="{node}"}})')
        check(v == 1, f'live: confab_build_info{{node="{node}"}} exported once ({v})')
        for extra in ("confab_sfu_loop_busy_seconds_total", "process_cpu_seconds_total"):
            v = value(f'count({extra}{{job="confab", node="{node}"}})')
            check(v == 1, f'live: {extra} (rendered beside the recorder) carries node="{node}"')

    # Every rule loaded and evaluated without error; no alert firing on a healthy server.
    with urllib.request.urlopen(prom.rstrip("/") + "/api/v1/rules", timeout=30) as r:
        groups = json.load(r)["data"]["groups"]
    rules = [ru for g in groups for ru in g["rules"]]
    expected = len(rule_exprs(root))
    check(len(rules) == expected, f"live: Prometheus loaded {len(rules)} of {expected} rules from alerts.yml")
    errs = [f"{ru['name']}: {ru.get('lastError')}" for ru in rules if ru.get("health") not in ("ok",)]
    check(not errs, "live: every rule evaluated with health ok" + ("" if not errs else ": " + "; ".join(errs)))
    with urllib.request.urlopen(prom.rstrip("/") + "/api/v1/alerts", timeout=30) as r:
        alerts = json.load(r)["data"]["alerts"]
    names = sorted({a["labels"]["alertname"] for a in alerts})
    check(not names, "live: no alert pending or firing on a healthy server"
          + ("" if not names else f": {names}"))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "static":
        cmd_static(sys.argv[2])
    elif cmd == "exprs":
        for dash, where, expr, kind, _ in dashboard_exprs(sys.argv[2]):
            print(json.dumps({"dashboard": dash, "where": where, "expr": substitute(expr), "kind": kind}))
        return 0
    elif cmd == "traffic":
        cmd_traffic(sys.argv[2])
    elif cmd == "cluster-traffic":
        cmd_cluster_traffic(sys.argv[2], sys.argv[3])
    elif cmd == "cluster-evaluate":
        cmd_cluster_evaluate(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif cmd == "node-down":
        cmd_node_down(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "evaluate":
        rest = sys.argv[4:]
        node = rest[rest.index("--node") + 1] if "--node" in rest[:-1] else None
        cmd_evaluate(sys.argv[2], sys.argv[3], "--require-data" in rest, node)
    else:
        print(__doc__)
        return 2
    # validate.sh counts PASS/FAIL lines; the exit code says whether this step failed.
    return 1 if results["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
