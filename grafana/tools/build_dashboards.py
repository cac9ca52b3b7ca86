#!/usr/bin/env python3
"""Builds the Confab Grafana dashboards (grafana/dashboards/*.json).

The JSON files are the artifacts Grafana loads; this script is how they are written, so that
panels share one layout, one datasource variable and one set of label filters. Edit here and run

    python3 grafana/tools/build_dashboards.py

(or edit the JSON by hand / export from Grafana: tests/observability/validate.sh checks the JSON,
not this script). Only metric names listed in docs/metrics.md may be used; `confab:*` series are
recording rules from grafana/alerts.yml.

Every Confab series carries a `node` label (the node's --node-name); every dashboard has a `node`
variable (multi-select, "All") and every selector of a Confab metric filters on it (`SEL`).
`up` has no `node` label (Prometheus makes it, per target): it is filtered through the node's
`confab_build_info` instead (`UP`). Panels marked `cluster_only` read series that stay empty on
a single node (cross-node delivery latency); tests/observability/validate.sh (one node) accepts
"no data" from them after checking that their series are exported, and
tests/observability/cluster.sh (two nodes) requires their data.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "dashboards")

DS = {"type": "prometheus", "uid": "${datasource}"}
# Every Confab selector is filtered by the job/instance/node variables.
SEL = 'job=~"$job", instance=~"$instance", node=~"$node"'
# `up` per target, kept for the targets of the selected nodes (any node seen in the last hour:
# a target that is down still shows, as 0).
UP = (
    'up{job=~"$job", instance=~"$instance"}'
    f" and on (job, instance) max_over_time(confab_build_info{{{SEL}}}[1h])"
)
# Nodes seen in the last hour that export nothing now (the ConfabNodeDown alert, per node).
NODES_DOWN = (
    f"max by (node) (max_over_time(confab_build_info{{{SEL}}}[1h]))"
    f" unless on (node) max by (node) (confab_build_info{{{SEL}}})"
)


def templating():
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
                "includeAll": False,
                "multi": False,
            },
            {
                "name": "job",
                "label": "Job",
                "type": "query",
                "datasource": DS,
                "definition": "label_values(confab_http_requests_total, job)",
                "query": {
                    "query": "label_values(confab_http_requests_total, job)",
                    "refId": "PrometheusVariableQueryEditor-VariableQuery",
                    "qryType": 1,
                },
                "current": {},
                "hide": 0,
                "refresh": 2,
                "regex": "",
                "sort": 1,
                "includeAll": False,
                "multi": False,
                "options": [],
            },
            {
                "name": "node",
                "label": "Node",
                "type": "query",
                "datasource": DS,
                "definition": 'label_values(confab_build_info{job=~"$job"}, node)',
                "query": {
                    "query": 'label_values(confab_build_info{job=~"$job"}, node)',
                    "refId": "PrometheusVariableQueryEditor-VariableQuery",
                    "qryType": 1,
                },
                "current": {},
                "hide": 0,
                "refresh": 2,
                "regex": "",
                "sort": 1,
                "includeAll": True,
                # ".*" rather than ".+": "All" also keeps series scraped before they had a node label.
                "allValue": ".*",
                "multi": True,
                "options": [],
            },
            {
                "name": "instance",
                "label": "Instance",
                "type": "query",
                "datasource": DS,
                "definition": 'label_values(confab_http_requests_total{job=~"$job", node=~"$node"}, instance)',
                "query": {
                    "query": 'label_values(confab_http_requests_total{job=~"$job", node=~"$node"}, instance)',
                    "refId": "PrometheusVariableQueryEditor-VariableQuery",
                    "qryType": 1,
                },
                "current": {},
                "hide": 0,
                "refresh": 2,
                "regex": "",
                "sort": 1,
                "includeAll": True,
                "allValue": ".+",
                "multi": True,
                "options": [],
            },
        ]
    }


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def target(expr, legend="__auto", ref="A", **extra):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}
    t.update(extra)
    return t


def thresholds(*steps, mode="absolute"):
    """steps: (value or None, color) pairs; the first value is None (the base)."""
    return {
        "mode": mode,
        "steps": [{"color": c, "value": v} for v, c in steps],
    }


GREEN = (None, "green")


def timeseries(title, targets, unit="short", desc="", thr=None, stack=False, min0=True,
               show_thresholds=False, decimals=None):
    defaults = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10 if not stack else 40,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line+area" if show_thresholds else "off"},
        },
        "thresholds": thr or thresholds(GREEN),
    }
    if min0:
        defaults["min"] = 0
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
    }


def stat(title, expr, unit="short", desc="", thr=None, mappings=None, decimals=None, legend="__auto"):
    defaults = {
        "unit": unit,
        "thresholds": thr or thresholds(GREEN),
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "justifyMode": "auto",
            "textMode": "auto",
            "orientation": "auto",
        },
        "targets": [target(expr, legend, instant=False)],
    }


def heatmap(title, expr, unit, desc=""):
    return {
        "type": "heatmap",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": {"custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False}}}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "steps": 64, "fill": "dark-orange", "reverse": False},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": True},
            "yAxis": {"axisPlacement": "left", "unit": unit, "reverse": False},
        },
        "targets": [target(expr, "{{le}}", format="heatmap")],
    }


def quantiles(metric, by="", qs=(0.5, 0.95, 0.99), window="$__rate_interval", extra_sel=""):
    """histogram_quantile targets over the `_bucket` series, one per quantile."""
    sel = SEL + (", " + extra_sel if extra_sel else "")
    by_clause = f"le{', ' + by if by else ''}"
    out = []
    for i, q in enumerate(qs):
        pct = f"p{int(q * 100)}"
        legend = f"{pct} {{{{{by}}}}}" if by else pct
        out.append(
            target(
                f"histogram_quantile({q}, sum by ({by_clause}) (rate({metric}_bucket{{{sel}}}[{window}])))",
                legend,
                ref=chr(ord("A") + i),
            )
        )
    return out


def dashboard(uid, title, description, layout, links_tag="confab"):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["confab"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                {
                    "datasource": DS,
                    "enable": True,
                    "hide": False,
                    "iconColor": "red",
                    "name": "Confab restarts",
                    "expr": f"changes(process_start_time_seconds{{{SEL}}}[2m]) > 0",
                    "step": "1m",
                    "titleFormat": "Confab restarted",
                    "textFormat": "{{node}} ({{instance}})",
                },
            ]
        },
        "links": [
            {"type": "dashboards", "tags": [links_tag], "asDropdown": True, "title": "Confab", "includeVars": True, "keepTime": True}
        ],
        "templating": templating(),
        "panels": layout.panels,
    }


def rate(metric, extra="", window="$__rate_interval"):
    sel = SEL + (", " + extra if extra else "")
    return f"rate({metric}{{{sel}}}[{window}])"


# ---------------------------------------------------------------------------------------------
def voice():
    L = Layout()
    L.row("Overview")
    L.add(stat("Rooms", f"sum(confab_sfu_rooms{{{SEL}}})", desc="Voice channels with at least one participant (confab_sfu_rooms)."), 4, 4)
    L.add(stat("SFU participants", f"sum(confab_sfu_participants{{{SEL}}})", desc="Peers in the SFU, connected or connecting."), 4, 4)
    L.add(stat("Published tracks", f"sum(confab_sfu_tracks{{{SEL}}})", desc="Participants with an audio send transceiver."), 4, 4)
    L.add(stat("Voice participants (signalling)", f"sum(confab_voice_participants{{{SEL}}})", desc="Users in voice channels as signalling sees them; should track SFU participants."), 4, 4)
    L.add(stat("Forwarded packets/s", f"sum(rate(confab_sfu_packets_forwarded_total{{{SEL}}}[$__rate_interval]))", unit="pps"), 4, 4)
    L.add(
        stat(
            "CPU per forwarded packet",
            f"1e6 * sum(rate(process_cpu_seconds_total{{{SEL}}}[1m])) / sum(rate(confab_sfu_packets_forwarded_total{{{SEL}}}[1m]))",
            unit="µs",
            decimals=1,
            desc="Whole-process CPU (µs) per forwarded RTP packet. Includes signalling/chat work, so it is only meaningful under voice load. Floor on this hardware: ~2-4 µs (docs/DESIGN.md).",
            thr=thresholds(GREEN, (10, "yellow"), (20, "red")),
        ),
        4,
        4,
    )

    L.row("Throughput")
    L.add(
        timeseries(
            "Packets received/s by kind",
            [target(f"sum by (kind) ({rate('confab_sfu_packets_received_total')})", "{{kind}}")],
            unit="pps",
            desc="audio = decrypted RTP str0m delivered; rtcp/stun/dtls = datagrams by first byte, before authentication.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Packets forwarded/s",
            [
                target(f"sum by (kind) ({rate('confab_sfu_packets_forwarded_total')})", "forwarded {{kind}}"),
                target(f"sum ({rate('confab_sfu_retransmissions_total')})", "retransmissions (RTX)", ref="B"),
            ],
            unit="pps",
            desc="One RTP packet handed to one subscriber (RTX and padding excluded).",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Media bytes in/out",
            [
                target(f"sum ({rate('confab_sfu_bytes_received_total')})", "received"),
                target(f"-sum ({rate('confab_sfu_bytes_sent_total')})", "sent", ref="B"),
            ],
            unit="Bps",
            min0=False,
            desc="UDP payload bytes on the media socket. Sent is drawn below zero.",
        ),
        8,
        8,
    )

    L.row("Media quality (publisher → SFU)")
    L.add(
        timeseries(
            "Receive loss ratio",
            quantiles("confab_sfu_receive_loss_ratio"),
            unit="percentunit",
            decimals=2,
            thr=thresholds(GREEN, (0.01, "yellow"), (0.02, "red")),
            show_thresholds=True,
            desc="Fraction of packets lost on incoming streams, per stats interval and stream. Alert: p95 > 2% for 5 min (ConfabVoiceReceiveLossHigh).",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Jitter",
            quantiles("confab_sfu_jitter_seconds"),
            unit="s",
            thr=thresholds(GREEN, (0.03, "yellow"), (0.05, "red")),
            show_thresholds=True,
            desc="Interarrival jitter of incoming streams.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "RTT",
            quantiles("confab_sfu_rtt_seconds"),
            unit="s",
            thr=thresholds(GREEN, (0.15, "yellow"), (0.3, "red")),
            show_thresholds=True,
            desc="Round-trip time per participant, from RTCP.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "NACKs, retransmissions and PLIs",
            [
                target(f"sum ({rate('confab_sfu_nacks_received_total')})", "NACKs received"),
                target(f"sum ({rate('confab_sfu_retransmissions_total')})", "RTX sent", ref="B"),
                target(f"sum ({rate('confab_sfu_keyframe_requests_total')})", "keyframe requests (PLI/FIR) sent", ref="C"),
            ],
            unit="cps",
            desc="NACK counts come from str0m's egress stats (updated every 5 s). Audio RTX is negotiated only with clients that offer it; browsers do not, so RTX is usually 0.",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Dropped packets/s by reason",
            [target(f"sum by (reason) ({rate('confab_sfu_packets_dropped_total')})", "{{reason}}")],
            unit="pps",
            stack=True,
            desc="no_stream is a bug if seen; send_error means the socket refused datagrams (send buffer full); unknown_peer/unknown_ufrag are often scans or peers that already left.",
        ),
        12,
        8,
    )

    L.row("Video (simulcast)")
    L.add(
        timeseries(
            "Video bitrate received per layer",
            [target(f"8 * sum by (layer) ({rate('confab_sfu_video_received_bytes_total')})", "{{layer}}")],
            unit="bps",
            stack=True,
            desc="RTP payload bits per second publishers send the SFU, by simulcast layer (low/mid/high by rank among a track's encodings; single = no simulcast). A layer at 0 while watched means its publisher paused it.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Video bitrate forwarded per layer",
            [target(f"8 * sum by (layer) ({rate('confab_sfu_video_forwarded_bytes_total')})", "{{layer}}")],
            unit="bps",
            stack=True,
            desc="RTP payload bits per second forwarded to viewers, by the simulcast layer they come from. Viewers get the smallest layer at least as large as their tile.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Layer switches and keyframe requests",
            [
                target(f"sum by (direction) ({rate('confab_sfu_video_layer_switches_total')})", "switch {{direction}}"),
                target(f"sum by (reason) ({rate('confab_sfu_keyframe_requests_total')})", "PLI: {{reason}}", ref="B"),
            ],
            unit="cps",
            desc="Slots moving to another layer (at a keyframe), and keyframe requests sent to publishers by reason (throttled to one round per track per 500 ms). Many switches in both directions mean views resizing or layers flapping; many subscriber_pli mean viewers losing packets.",
        ),
        8,
        8,
    )

    L.row("Forwarding latency")
    L.add(
        heatmap(
            "Forward latency heatmap",
            f"sum by (le) (rate(confab_sfu_forward_latency_seconds_bucket{{{SEL}}}[$__rate_interval]))",
            "s",
            desc="Receive of an RTP packet → subscriber's SRTP datagram handed to the socket layer. Buckets 10 µs–100 ms.",
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Forward latency quantiles",
            quantiles("confab_sfu_forward_latency_seconds"),
            unit="s",
            thr=thresholds(GREEN, (0.01, "yellow"), (0.02, "red")),
            show_thresholds=True,
            desc="Alert: p99 > 20 ms for 5 min (ConfabForwardLatencyHigh).",
        ),
        12,
        9,
    )

    L.row("Joins and connectivity")
    L.add(
        timeseries(
            "ICE + DTLS connect time",
            quantiles("confab_sfu_ice_connect_seconds"),
            unit="s",
            thr=thresholds(GREEN, (0.5, "yellow"), (2, "red")),
            show_thresholds=True,
            desc="Answer created → ICE and DTLS connected. ~60-80 ms on a LAN.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Connect failures",
            [
                target(f"sum (increase(confab_sfu_connect_failures_total{{{SEL}}}[$__rate_interval]))", "failures"),
                target(f"sum (increase(confab_sfu_ice_connect_seconds_count{{{SEL}}}[$__rate_interval]))", "connected", ref="B"),
            ],
            unit="short",
            decimals=0,
            desc="Participants that did not connect within the connect timeout (20 s), next to the ones that did. Failures usually mean UDP blocked or a wrong --public-ip.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Offer → answer time",
            quantiles("confab_voice_offer_seconds"),
            unit="s",
            desc="Signalling: offer received → SFU answer ready.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Voice joins, rejoins and leaves",
            [
                target(f"sum ({rate('confab_voice_joins_total')})", "joins"),
                target(f"sum ({rate('confab_voice_rejoins_total')})", "rejoins", ref="B"),
                target(f"-sum by (reason) ({rate('confab_voice_leaves_total')})", "leave: {{reason}}", ref="C"),
            ],
            unit="ops",
            min0=False,
            desc="Leaves are drawn below zero, by reason. Many 'timeout' leaves or rejoins point at unstable client networks.",
        ),
        24,
        8,
    )

    L.row("Media loop load")
    L.add(
        timeseries(
            "Media loop busy ratio",
            [
                target(f"rate(confab_sfu_loop_busy_seconds_total{{{SEL}}}[$__rate_interval])", "media loop {{node}}"),
                target(
                    f"rate(confab_sfu_send_worker_busy_seconds_total{{{SEL}}}[$__rate_interval])",
                    "send workers {{node}}",
                    ref="B",
                ),
            ],
            unit="percentunit",
            thr=thresholds(GREEN, (0.6, "yellow"), (0.8, "red")),
            show_thresholds=True,
            desc="Share of time the SFU media loop spends processing rather than waiting for datagrams, commands or timers. Near 100% it cannot keep up. Alert: > 80% for 10 min (ConfabSfuSaturated). \"send workers\" is the time the send workers (lanes 1..N of --sfu-send-workers) spent protecting and sending fast-path audio, summed over workers (up to N-1).",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Work per loop iteration",
            [
                target(
                    f"rate(confab_sfu_loop_busy_seconds_total{{{SEL}}}[$__rate_interval]) / rate(confab_sfu_loop_iterations_total{{{SEL}}}[$__rate_interval])",
                    "busy per wake-up {{node}}",
                ),
                target(f"rate(confab_sfu_loop_iterations_total{{{SEL}}}[$__rate_interval])", "wake-ups/s {{node}}", ref="B", hide=True),
            ],
            unit="s",
            desc="Mean processing time per loop wake-up (a receive batch, a command or a timer). Growing with constant wake-ups means more work per packet (larger rooms).",
        ),
        12,
        8,
    )

    L.row("Cost")
    L.add(
        timeseries(
            "CPU per forwarded packet",
            [
                target(
                    f"1e6 * rate(process_cpu_seconds_total{{{SEL}}}[1m]) / on (job, instance) sum by (job, instance) (rate(confab_sfu_packets_forwarded_total{{{SEL}}}[1m]))",
                    "{{node}}",
                ),
            ],
            unit="µs",
            decimals=1,
            thr=thresholds(GREEN, (10, "yellow"), (20, "red")),
            show_thresholds=True,
            desc="1e6 × rate(process_cpu_seconds_total[1m]) / rate(confab_sfu_packets_forwarded_total[1m]) per node. Whole-process CPU: read it under voice load only.",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Process CPU (cores)",
            [target(f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{node}}")],
            unit="short",
            decimals=2,
            thr=thresholds(GREEN, (0.7, "yellow"), (0.9, "red")),
            show_thresholds=True,
            desc="1.0 = one core busy. Whole process (signalling, chat and the SFU); the media loop's own load is the busy ratio above.",
        ),
        12,
        8,
    )
    return dashboard(
        "confab-voice",
        "Confab / Voice (SFU)",
        "Voice channels and the SFU media plane: load, quality, latency, joins, drops, cost.",
        L,
    )


# ---------------------------------------------------------------------------------------------
NOT_OPS = 'route!~"/metrics|/healthz|/readyz"'
_ALL = f"sum(rate(confab_http_requests_total{{{SEL}, {NOT_OPS}}}[$__rate_interval]))"
_NOT_5XX = f'sum(rate(confab_http_requests_total{{{SEL}, {NOT_OPS}, status!~"5.."}}[$__rate_interval]))'
# 5xx / all API requests. The 5xx series exist only once a 5xx was answered (status is a label of
# the per-request series), so the second arm computes the same ratio from the other side,
# 1 - non-5xx / all: an exact value (0 when there were none), not a padding constant.
ERROR_RATIO = (
    f'(sum(rate(confab_http_requests_total{{{SEL}, {NOT_OPS}, status=~"5.."}}[$__rate_interval])) / {_ALL})'
    f" or (1 - {_NOT_5XX} / {_ALL})"
)
_BY = "sum by (method, route) "
ERRORS_BY_ROUTE = (
    f'{_BY}(rate(confab_http_requests_total{{{SEL}, status=~"5.."}}[$__rate_interval]))'
    f" or ({_BY}(rate(confab_http_requests_total{{{SEL}}}[$__rate_interval]))"
    f' - {_BY}(rate(confab_http_requests_total{{{SEL}, status!~"5.."}}[$__rate_interval])))'
)


def chat():
    L = Layout()
    L.row("Overview")
    L.add(stat("Gateway connections", f"sum(confab_gateway_connections{{{SEL}}})", desc="Open gateway WebSockets."), 4, 4)
    L.add(stat("Gateway sessions", f"sum(confab_gateway_sessions{{{SEL}}})", desc="Sessions connected or waiting to be resumed."), 4, 4)
    L.add(stat("Messages/s", f"sum(rate(confab_messages_created_total{{{SEL}}}[$__rate_interval]))", unit="ops", decimals=2), 4, 4)
    L.add(stat("HTTP requests/s", f"sum(rate(confab_http_requests_total{{{SEL}, {NOT_OPS}}}[$__rate_interval]))", unit="reqps", decimals=2, desc="Excluding /metrics, /healthz and /readyz."), 4, 4)
    L.add(
        stat(
            "HTTP 5xx ratio",
            ERROR_RATIO,
            unit="percentunit",
            decimals=3,
            thr=thresholds(GREEN, (0.001, "yellow"), (0.01, "red")),
            desc="SLO: 99.9% of API requests answered without a 5xx (ConfabHttpErrorBudgetBurn*).",
        ),
        4,
        4,
    )
    L.add(
        stat(
            "DB pool in use",
            f'sum(confab_db_pool_connections{{{SEL}, state="in_use"}}) / sum(confab_db_pool_max_connections{{{SEL}}})',
            unit="percentunit",
            thr=thresholds(GREEN, (0.7, "yellow"), (0.95, "red")),
            desc="Connections in use / configured pool size (--db-pool-size).",
        ),
        4,
        4,
    )

    L.row("Gateway")
    L.add(
        timeseries(
            "Connections and sessions",
            [
                target(f"sum(confab_gateway_connections{{{SEL}}})", "open connections"),
                target(f"sum(confab_gateway_sessions{{{SEL}}})", "sessions (incl. resumable)", ref="B"),
            ],
            desc="Sessions above connections = sessions waiting to be resumed.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Session lifecycle",
            [
                target(f"sum({rate('confab_gateway_connections_total')})", "connections accepted"),
                target(f"sum({rate('confab_gateway_identifies_total')})", "IDENTIFY", ref="B"),
                target(f"sum({rate('confab_gateway_resumes_total')})", "RESUME", ref="C"),
                target(f"sum({rate('confab_gateway_invalid_sessions_total')})", "INVALID_SESSION", ref="D"),
            ],
            unit="ops",
            desc="A reconnect storm shows as a spike of accepted connections and RESUMEs; many INVALID_SESSION means resumes arrive after the session expired.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Dispatches/s",
            [target(f"sum({rate('confab_gateway_dispatches_total')})", "dispatches")],
            unit="ops",
            desc="Events delivered to sessions (one event to 1,000 sessions counts 1,000).",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Slow disconnects and refused frames",
            [
                target(f"sum({rate('confab_gateway_slow_disconnects_total')})", "slow disconnects (4008)"),
                target(f"sum({rate('confab_gateway_refused_frames_total')})", "refused frames", ref="B"),
            ],
            unit="ops",
            decimals=3,
            thr=thresholds(GREEN, (0.1, "red")),
            show_thresholds=True,
            desc="Slow disconnects: send queue full (client or network too slow). Refused frames: bad JSON, unknown op, over budget or too large — a buggy client or abuse.",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Rate-limited requests by bucket",
            [target(f"sum by (bucket) ({rate('confab_http_rate_limited_total')})", "{{bucket}}")],
            unit="reqps",
            stack=True,
            desc="Requests refused with 429.",
        ),
        12,
        8,
    )

    L.row("Messages")
    L.add(
        timeseries(
            "Messages created/s",
            [target(f"sum({rate('confab_messages_created_total')})", "messages")],
            unit="ops",
        ),
        12,
        7,
    )
    L.add(
        timeseries(
            "Message write batch size",
            quantiles("confab_message_write_batch_size"),
            unit="short",
            desc="Messages written per database round trip. Batches grow under load instead of queries queueing; p99 near 256 (the maximum) means the writer is at capacity.",
        ),
        12,
        7,
    )

    L.row("HTTP (RED)")
    L.add(
        timeseries(
            "Requests/s by route",
            [target(f"sum by (method, route) ({rate('confab_http_requests_total')})", "{{method}} {{route}}")],
            unit="reqps",
            stack=True,
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Errors/s by status",
            [target("sum by (status) (" + rate("confab_http_requests_total", 'status=~"[45].."') + ")", "{{status}}")],
            unit="reqps",
            stack=True,
            desc="4xx are client errors (auth, validation, 429); 5xx are ours.",
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "5xx by route",
            [target(ERRORS_BY_ROUTE, "{{method}} {{route}}")],
            unit="reqps",
            desc="5xx answers per second by route; routes without 5xx show all requests minus non-5xx ones (0).",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "5xx ratio and error-budget burn",
            [
                target(
                    ERROR_RATIO,
                    "5xx ratio",
                ),
                target(f'sum(confab:http_errors:ratio_rate1h{{job=~"$job"}})', "1h (recorded)", ref="B"),
                target(f'sum(confab:http_errors:ratio_rate6h{{job=~"$job"}})', "6h (recorded)", ref="C"),
            ],
            unit="percentunit",
            decimals=3,
            thr=thresholds(GREEN, (0.006, "yellow"), (0.0144, "red")),
            show_thresholds=True,
            desc="99.9% SLO: 6x burn (0.6%) over 6h and 14.4x (1.44%) over 1h page. The recorded series come from grafana/alerts.yml and cover every node of the job (the SLO is the service's), whatever the node selection.",
        ),
        12,
        8,
    )
    for q in (0.5, 0.95, 0.99):
        L.add(
            timeseries(
                f"Duration p{int(q * 100)} by route",
                [
                    target(
                        f"histogram_quantile({q}, sum by (le, method, route) (rate(confab_http_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                        "{{method}} {{route}}",
                    )
                ],
                unit="s",
                thr=thresholds(GREEN, (0.5, "yellow"), (1, "red")),
                desc="Histogram buckets 1 ms–5 s. WebSocket upgrades count until the upgrade. Registration and login include argon2 hashing (hundreds of ms by design).",
            ),
            8,
            8,
        )

    L.row("Database pool")
    L.add(
        timeseries(
            "Pool connections",
            [
                target(f"sum by (state) (confab_db_pool_connections{{{SEL}}})", "{{state}}"),
                target(f"sum(confab_db_pool_max_connections{{{SEL}}})", "max", ref="B"),
            ],
            desc="Sampled at scrape time. in_use reaching max means requests queue for a connection (ConfabDbPoolExhausted).",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Hot query latency p99",
            quantiles("confab_db_query_duration_seconds", by="query", qs=(0.99,)),
            unit="s",
            desc="Message batch insert, access checks and history pages, pool wait included.",
        ),
        12,
        8,
    )
    return dashboard(
        "confab-chat",
        "Confab / Chat and gateway",
        "Gateway WebSockets, sessions and dispatches, messages, rate limits, HTTP RED by route, DB pool and query latency.",
        L,
    )


def text_mode_name(panel):
    """A stat panel that shows the series name (its legend) instead of the value."""
    panel["options"]["textMode"] = "name"
    return panel


def cluster_only(panel):
    """Marks a panel whose series stay empty on a single node (tests/observability accepts no
    data from it there, once it has checked that the series it reads are exported)."""
    panel["confabClusterOnly"] = True
    return panel


def cluster_row(L):
    """The nodes of a cluster side by side: which are up, their load, their bus (NATS) traffic and
    the cross-node delivery latency (docs/cluster.md, Monitoring)."""
    L.row("Cluster")
    L.add(
        stat(
            "Nodes up",
            f"count(max by (node) (confab_build_info{{{SEL}}})) or vector(0)",
            decimals=0,
            thr=thresholds((None, "red"), (1, "green")),
            desc="Selected nodes Prometheus scrapes now (each exports confab_build_info with its node name).",
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Nodes down",
            f"count({NODES_DOWN}) or vector(0)",
            decimals=0,
            thr=thresholds(GREEN, (1, "red")),
            desc="Selected nodes seen in the last hour that Prometheus does not scrape now (down, or removed from the targets): ConfabNodeDown fires for each after a minute. A node taken out on purpose counts here for an hour.",
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Node status",
            f"max by (node) (confab_build_info{{{SEL}}})"
            f" or on (node) 0 * max by (node) (max_over_time(confab_build_info{{{SEL}}}[1h]))",
            thr=thresholds((None, "red"), (1, "green")),
            mappings=[{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}],
            legend="{{node}}",
            desc="Each selected node seen in the last hour: UP while Prometheus scrapes it, DOWN otherwise.",
        ),
        16,
        4,
    )
    L.add(
        timeseries(
            "Gateway sessions per node",
            [
                target(f"sum by (node) (confab_gateway_sessions{{{SEL}}})", "sessions {{node}}"),
                target(f"sum by (node) (confab_gateway_connections{{{SEL}}})", "connections {{node}}", ref="B"),
            ],
            decimals=0,
            desc="Gateway sessions (connected or waiting to be resumed) and open gateway WebSockets on each node: how the load balancer spreads clients. A node dying moves its clients to the others (they IDENTIFY again there).",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Voice per node",
            [
                target(f"sum by (node) (confab_sfu_rooms{{{SEL}}})", "rooms {{node}}"),
                target(f"sum by (node) (confab_sfu_participants{{{SEL}}})", "SFU participants {{node}}", ref="B"),
                target(f"sum by (node) (confab_voice_participants{{{SEL}}})", "voice participants (signalling) {{node}}", ref="C"),
            ],
            decimals=0,
            desc="Voice rooms (channels with a participant) and participants in each node's SFU, and users in voice as each api node's signalling sees them (the voice sessions of its gateway sessions). Voice media lives on media nodes (role media or all), placed by the api nodes (docs/cluster.md, Voice).",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Media nodes",
            [
                target(f"max by (node) (confab_media_nodes{{{SEL}}})", "media nodes heard by {{node}}"),
                target(f"sum by (node) (confab_media_node_participants{{{SEL}}})", "participants on {{node}}", ref="B"),
                target(f"max by (node) (confab_media_node_draining{{{SEL}}})", "draining {{node}}", ref="C"),
                target(f"sum by (node) (increase(confab_media_nodes_lost_total{{{SEL}}}[5m]))", "lost (5 min) seen by {{node}}", ref="D"),
                target(f"sum by (node) (increase(confab_voice_reconnects_total{{{SEL}}}[5m]))", "reconnects (5 min) {{node}}", ref="E"),
            ],
            decimals=0,
            desc="Api nodes: media nodes they hear announcements from (a media node silent for 2 s is lost: its participants reconnect elsewhere). Media nodes: participants placed on them and whether they drain. All zero on a single node.",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Relay between media nodes",
            [
                target(f'sum by (node) (rate(confab_sfu_relay_packets_total{{{SEL}, direction="sent"}}[$__rate_interval]))', "sent {{node}}"),
                target(f'sum by (node) (rate(confab_sfu_relay_packets_total{{{SEL}, direction="received"}}[$__rate_interval]))', "received {{node}}", ref="B"),
                target(f"sum by (node) (rate(confab_sfu_relay_dropped_total{{{SEL}}}[$__rate_interval]))", "dropped {{node}}", ref="C"),
                target(f"sum by (node) (confab_sfu_remote_publishers{{{SEL}}})", "remote speakers {{node}}", ref="D"),
            ],
            unit="short",
            desc="Audio of channels that span media nodes (docs/relay.md): packets each media node relays to and receives from the others (one copy per remote node), relay datagrams dropped (bad key, unknown room, replay: docs/metrics.md has the reasons) and the remote speakers its rooms hold. Zero on a single node.",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Bus messages/s per node",
            [
                target(f"sum by (node) (rate(confab_bus_published_total{{{SEL}}}[$__rate_interval]))", "published {{node}}"),
                target(f"sum by (node) (rate(confab_bus_received_total{{{SEL}}}[$__rate_interval]))", "received {{node}}", ref="B"),
            ],
            unit="ops",
            desc="NATS messages each node publishes (its events for other nodes) and receives (other nodes' events). Zero on a single node (docs/cluster.md).",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Bus errors/s per node",
            [
                target(f"sum by (node) (rate(confab_bus_publish_errors_total{{{SEL}}}[$__rate_interval]))", "publish errors {{node}}"),
                target(f"sum by (node) (rate(confab_bus_dropped_total{{{SEL}}}[$__rate_interval]))", "dropped {{node}}", ref="B"),
                target(f"sum by (node) (rate(confab_bus_undecodable_total{{{SEL}}}[$__rate_interval]))", "undecodable {{node}}", ref="C"),
            ],
            unit="ops",
            decimals=3,
            thr=thresholds(GREEN, (0.001, "red")),
            show_thresholds=True,
            desc="Messages the NATS client refused, events dropped because the outbox was full while NATS was away, and received messages that were not Confab events. All should be 0.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Bus connected and subscriptions",
            [
                target(f"max by (node) (confab_bus_connected{{{SEL}}})", "connected {{node}}"),
                target(f"max by (node) (confab_bus_subscriptions{{{SEL}}})", "subscriptions {{node}}", ref="B"),
            ],
            decimals=0,
            desc="confab_bus_connected: 1 while the node is connected to NATS (always 1 on a single node; ConfabBusDisconnected fires after a minute at 0). Subscriptions: one per server and user with sessions on the node.",
        ),
        8,
        8,
    )
    L.add(
        cluster_only(timeseries(
            "Cross-node delivery latency",
            quantiles("confab_bus_delivery_seconds", by="node", qs=(0.5, 0.99)),
            unit="s",
            thr=thresholds(GREEN, (0.05, "yellow"), (0.25, "red")),
            show_thresholds=True,
            desc="From an event's publication on one node to its receipt on the node named (p50, p99; buckets 100 µs–1 s); across machines it includes their clock difference. No data on a single node or while no events cross nodes: there is nothing to time, and 0 would claim an instant delivery.",
        )),
        24,
        8,
    )


# ---------------------------------------------------------------------------------------------
def node():
    L = Layout()
    L.row("Health")
    L.add(
        stat(
            "Scrape target up",
            UP,
            thr=thresholds((None, "red"), (1, "green")),
            mappings=[{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}],
            legend="{{instance}}",
            desc="Prometheus could scrape /metrics, per target of the selected nodes (a target that never answered has no node yet: ConfabDown covers it). Readiness proper (/readyz: DB reachable, SFU loop running) is not exported as a metric; see ConfabNotReady.",
        ),
        6,
        4,
    )
    L.add(stat("Uptime", f"time() - process_start_time_seconds{{{SEL}}}", unit="s", legend="{{node}}",
               thr=thresholds((None, "orange"), (600, "green")), desc="Orange during the first 10 minutes after a (re)start."), 6, 4)
    L.add(stat("Restarts (24h)", f"sum(changes(process_start_time_seconds{{{SEL}}}[24h]))", decimals=0,
               thr=thresholds(GREEN, (1, "yellow"), (3, "red"))), 6, 4)
    L.add(
        stat(
            "/readyz failures (5m)",
            # Non-2xx probes where any were counted; otherwise all probes minus 2xx probes (an exact 0).
            f'sum(increase(confab_http_requests_total{{{SEL}, route="/readyz", status!~"2.."}}[5m]))'
            f' or (sum(increase(confab_http_requests_total{{{SEL}, route="/readyz"}}[5m]))'
            f' - sum(increase(confab_http_requests_total{{{SEL}, route="/readyz", status=~"2.."}}[5m])))',
            decimals=0,
            thr=thresholds(GREEN, (1, "red")),
            desc="Non-2xx answers to /readyz probes (from your load balancer / orchestrator). No data when nothing probes /readyz.",
        ),
        6,
        4,
    )

    L.add(
        text_mode_name(stat(
            "Build",
            f"confab_build_info{{{SEL}}}",
            legend="{{node}} {{version}}",
            desc="confab_build_info: the node name and version each instance runs (the value is always 1).",
        )),
        24,
        3,
    )

    cluster_row(L)

    L.row("Resources")
    L.add(
        timeseries(
            "CPU (share of one core)",
            [target(f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{node}}")],
            unit="percentunit",
            thr=thresholds(GREEN, (0.7, "yellow"), (0.9, "red")),
            show_thresholds=True,
            desc="100% = one core. The SFU media loop is one thread: its own load is the busy ratio on the Voice dashboard (ConfabSfuSaturated).",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Memory",
            [
                target(f"process_resident_memory_bytes{{{SEL}}}", "RSS {{node}}"),
                target(f"process_virtual_memory_bytes{{{SEL}}}", "virtual {{node}}", ref="B", hide=True),
            ],
            unit="bytes",
            desc="Resident set size. Virtual size is hidden by default (large and not meaningful for Rust allocators).",
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Open file descriptors",
            [
                target(f"process_open_fds{{{SEL}}}", "open {{node}}"),
                target(f"process_max_fds{{{SEL}}}", "max {{node}}", ref="B"),
            ],
            desc="Each gateway WebSocket and DB connection is one fd.",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "File descriptor use",
            [target(f"process_open_fds{{{SEL}}} / process_max_fds{{{SEL}}}", "{{node}}")],
            unit="percentunit",
            thr=thresholds(GREEN, (0.6, "yellow"), (0.8, "red")),
            show_thresholds=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries("Threads", [target(f"process_threads{{{SEL}}}", "{{node}}")], decimals=0),
        8,
        8,
    )
    L.add(
        timeseries(
            "Uptime",
            [target(f"time() - process_start_time_seconds{{{SEL}}}", "{{node}}")],
            unit="s",
        ),
        12,
        7,
    )
    L.add(
        timeseries(
            "Scrape target up",
            [target(UP, "{{instance}}")],
            thr=thresholds((None, "red"), (1, "green")),
            decimals=0,
        ),
        12,
        7,
    )

    return dashboard(
        "confab-node",
        "Confab / Node health",
        "Each Confab node's process health (up, uptime, CPU, memory, file descriptors, threads) and the cluster: nodes up and down, sessions and voice per node, the NATS bus and cross-node delivery latency.",
        L,
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, fn in (("confab-voice.json", voice), ("confab-chat.json", chat), ("confab-node.json", node)):
        path = os.path.join(OUT, name)
        with open(path, "w") as f:
            json.dump(fn(), f, indent=2, ensure_ascii=False)
            f.write("\n")
        print("wrote", os.path.relpath(path))


if __name__ == "__main__":
    main()
