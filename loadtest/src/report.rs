//! `--report FILE.html`: one self-contained page (inline SVG, inline CSS,
//! no scripts, nothing fetched) with the run's key figures and plots over
//! time, built from the same JSON `--json` writes.

use std::fmt::Write;

use serde_json::Value;

const W: f64 = 680.0;
const H: f64 = 260.0;
const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 28.0;
const MB: f64 = 40.0;
const COLORS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"];

/// One line: a name and its points (a `None` y breaks the line).
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, Option<f64>)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let k = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * mag
}

fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        let d = (-step.log10().floor()) as usize;
        format!("{v:.d$}")
    }
}

/// An SVG line chart; the y axis starts at 0.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, lines: &[Line]) -> String {
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .filter(|y| y.is_finite());
    let (xmin, xmax) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let ymax_data = ys.fold(0.0f64, f64::max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img"><title>{t}</title><text x="{cx}" y="16" text-anchor="middle" class="t">{t}</text>"#,
        t = esc(title),
        cx = W / 2.0
    );
    if !xmin.is_finite() || lines.iter().all(|l| l.points.iter().all(|p| p.1.is_none())) {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return svg;
    }
    let (xmin, xmax) = if xmax > xmin {
        (xmin, xmax)
    } else {
        (xmin - 1.0, xmin + 1.0)
    };
    let ystep = nice_step(if ymax_data > 0.0 { ymax_data } else { 1.0 }, 5.0);
    let ymax = ((ymax_data / ystep).ceil() * ystep).max(ystep);
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let sx = |x: f64| ML + (x - xmin) / (xmax - xmin) * pw;
    let sy = |y: f64| MT + ph - (y / ymax) * ph;
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= ymax + ystep * 0.01 {
        let _ = write!(
            svg,
            r##"<line x1="{ML}" x2="{x2}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="k">{lbl}</text>"##,
            x2 = ML + pw,
            py = sy(y),
            tx = ML - 4.0,
            ty = sy(y) + 4.0,
            lbl = fmt_tick(y, ystep)
        );
        y += ystep;
    }
    // X ticks.
    let xstep = nice_step(xmax - xmin, 8.0);
    let mut x = (xmin / xstep).ceil() * xstep;
    while x <= xmax + xstep * 0.01 {
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{y1}" y2="{y2}" stroke="#999"/><text x="{px:.1}" y="{ty}" text-anchor="middle" class="k">{lbl}</text>"##,
            px = sx(x),
            y1 = MT + ph,
            y2 = MT + ph + 4.0,
            ty = MT + ph + 16.0,
            lbl = fmt_tick(x, xstep)
        );
        x += xstep;
    }
    let _ = write!(
        svg,
        r##"<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#333"/><text x="{cx}" y="{by}" text-anchor="middle" class="k">{xl}</text><text transform="translate(14,{cy}) rotate(-90)" text-anchor="middle" class="k">{yl}</text>"##,
        cx = ML + pw / 2.0,
        by = H - 6.0,
        cy = MT + ph / 2.0,
        xl = esc(x_label),
        yl = esc(y_label)
    );
    for (i, l) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // Split at missing values into separate polylines.
        let mut seg: Vec<String> = Vec::new();
        let flush = |seg: &mut Vec<String>, svg: &mut String| {
            if seg.len() == 1 {
                // A lone point: draw a dot.
                let p: Vec<&str> = seg[0].split(',').collect();
                let _ = write!(
                    svg,
                    r#"<circle cx="{}" cy="{}" r="2" fill="{color}"/>"#,
                    p[0], p[1]
                );
            } else if seg.len() > 1 {
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
                    seg.join(" ")
                );
            }
            seg.clear();
        };
        for &(x, y) in &l.points {
            match y.filter(|v| v.is_finite()) {
                Some(y) => seg.push(format!("{:.1},{:.1}", sx(x), sy(y))),
                None => flush(&mut seg, &mut svg),
            }
        }
        flush(&mut seg, &mut svg);
        let ly = MT + 12.0 + i as f64 * 14.0;
        let _ = write!(
            svg,
            r#"<line x1="{x1}" x2="{x2}" y1="{yy}" y2="{yy}" stroke="{color}" stroke-width="2"/><text x="{tx}" y="{ty}" class="k">{n}</text>"#,
            x1 = ML + pw - 110.0,
            x2 = ML + pw - 92.0,
            yy = ly - 4.0,
            tx = ML + pw - 88.0,
            ty = ly,
            n = esc(&l.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn arr(v: &Value) -> Vec<Option<f64>> {
    v.as_array()
        .map(|a| a.iter().map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Per-second series `key` of `ts` as a line (x = second of the window).
fn per_second(ts: &Value, key: &str, name: &str) -> Line {
    let t = arr(&ts["t"]);
    let y = arr(&ts[key]);
    Line {
        name: name.into(),
        points: t
            .iter()
            .zip(y)
            .filter_map(|(t, y)| t.map(|t| (t, y)))
            .collect(),
    }
}

/// The server sampler's series (x = seconds into the window).
fn sampled(ts: &Value, key: &str, name: &str) -> Line {
    per_second(ts, key, name)
}

fn cdf(sorted: &[Option<f64>], name: &str) -> Line {
    let v: Vec<f64> = sorted.iter().flatten().copied().collect();
    let n = v.len().max(1) as f64;
    Line {
        name: name.into(),
        points: v
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, Some((i + 1) as f64 * 100.0 / n)))
            .collect(),
    }
}

fn row(h: &mut String, k: &str, v: String) {
    let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Value::Null => "n/a".into(),
        other => other.to_string(),
    }
}

fn pct(h: &Value) -> String {
    format!(
        "p50 {} / p95 {} / p99 {} / max {} ms",
        num(&h["p50"]),
        num(&h["p95"]),
        num(&h["p99"]),
        num(&h["max"])
    )
}

/// The whole page.
pub fn html(out: &Value) -> String {
    let mut h = String::new();
    let mode = out["mode"].as_str().unwrap_or("");
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>confab-loadtest {m}</title>\
         <style>body{{font-family:sans-serif;margin:24px;max-width:1440px}}table{{border-collapse:collapse;margin-bottom:16px}}\
         th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}}th{{background:#f4f4f4}}\
         svg{{margin:6px;border:1px solid #eee}}svg text{{font-size:11px}}svg text.t{{font-size:13px;font-weight:bold}}\
         .pass{{color:#2ca02c}}.fail{{color:#d62728}}pre{{font-size:11px;background:#f8f8f8;padding:8px}}</style></head><body>\
         <h1>confab-loadtest {m}</h1><p>target {u}, started (unix) {s}</p>",
        m = esc(mode),
        u = esc(out["url"].as_str().unwrap_or("")),
        s = out["started_unix"]
    );
    if let Some(t) = out.get("thresholds") {
        let passed = t["passed"].as_bool().unwrap_or(false);
        let _ = write!(
            h,
            "<h2 class=\"{c}\">Thresholds: {r}</h2><ul>",
            c = if passed { "pass" } else { "fail" },
            r = if passed { "PASS" } else { "FAIL" }
        );
        let failed: Vec<&str> = t["failed"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for c in t["checked"].as_array().into_iter().flatten() {
            let c = c.as_str().unwrap_or("");
            let bad = failed.contains(&c);
            let _ = write!(
                h,
                "<li class=\"{}\">{} {}</li>",
                if bad { "fail" } else { "pass" },
                if bad { "✗" } else { "✓" },
                esc(c)
            );
        }
        h.push_str("</ul>");
    }
    let ts = &out["timeseries"];
    if let Some(v) = out.get("voice") {
        h.push_str("<h2>Voice</h2><table>");
        row(
            &mut h,
            "peers",
            format!(
                "{} rooms × ({} speakers + {} listeners); {} joined, {} failed",
                v["rooms"], v["speakers"], v["listeners"], v["joined"], v["failed"]
            ),
        );
        row(
            &mut h,
            "loss",
            format!(
                "{} % ({} of {} packets received; worst listener {} %)",
                num(&v["loss_percent"]),
                v["packets_received"],
                v["packets_expected"],
                num(&v["worst_listener_loss_percent"])
            ),
        );
        row(&mut h, "latency (kernel rx)", pct(&v["latency_ms"]));
        row(&mut h, "jitter", pct(&v["jitter_ms"]));
        row(&mut h, "join (op 4 → connected)", pct(&v["join_ms"]));
        row(
            &mut h,
            "NACKs / gaps / filled later",
            format!(
                "{} / {} / {}",
                v["nacks_sent"], v["seq_gaps"], v["packets_recovered"]
            ),
        );
        row(
            &mut h,
            "audio integrity",
            format!(
                "{} frames decoded, {} failed, min correlation {}",
                v["integrity_checked"],
                v["integrity_failed"],
                num(&v["integrity_min_correlation"])
            ),
        );
        h.push_str("</table>");
        let vt = &ts["voice"];
        h.push_str(&line_chart(
            "Voice latency per second (by send time)",
            "second of the window",
            "ms",
            &[
                per_second(vt, "p50", "p50"),
                per_second(vt, "p95", "p95"),
                per_second(vt, "p99", "p99"),
            ],
        ));
        h.push_str(&line_chart(
            "Voice loss per second (by send time)",
            "second of the window",
            "% lost",
            &[per_second(vt, "loss_percent", "loss %")],
        ));
        h.push_str(&line_chart(
            "Throughput",
            "second of the window",
            "packets / s",
            &[
                per_second(vt, "rx_packets", "received by tester"),
                sampled(&ts["server"], "forwarded_per_s", "forwarded by SFU"),
            ],
        ));
        h.push_str(&line_chart(
            "Join time (CDF)",
            "ms from op 4 to connected",
            "% of peers",
            &[cdf(&arr(&vt["join_ms_sorted"]), "joined peers")],
        ));
    }
    if let Some(c) = out.get("chat") {
        h.push_str("<h2>Chat</h2><table>");
        row(
            &mut h,
            "clients",
            format!(
                "{} connected of {} ({} users, {} channels)",
                c["connected"], c["clients"], c["users"], c["channels"]
            ),
        );
        row(
            &mut h,
            "messages",
            format!(
                "{} persisted of {} attempted ({} msg/s)",
                c["messages_persisted"],
                c["messages_attempted"],
                num(&c["messages_per_second"])
            ),
        );
        row(
            &mut h,
            "deliveries",
            format!(
                "{} of {} expected ({} /s); lost {}, duplicated {}",
                c["deliveries"],
                c["expected_deliveries"],
                num(&c["deliveries_per_second"]),
                c["lost"],
                c["duplicated"]
            ),
        );
        row(&mut h, "send → deliver", pct(&c["deliver_ms"]));
        row(&mut h, "POST round trip", pct(&c["post_ms"]));
        h.push_str("</table>");
        let ct = &ts["chat"];
        h.push_str(&line_chart(
            "Chat send → deliver latency per second (by send time)",
            "second of the send window",
            "ms",
            &[
                per_second(ct, "p50", "p50"),
                per_second(ct, "p95", "p95"),
                per_second(ct, "p99", "p99"),
            ],
        ));
        h.push_str(&line_chart(
            "Messages persisted per second",
            "second of the send window",
            "messages / s",
            &[per_second(ct, "persisted", "persisted (201)")],
        ));
        h.push_str(&line_chart(
            "Deliveries per second (by arrival)",
            "second of the send window",
            "deliveries / s",
            &[per_second(ct, "deliveries", "deliveries")],
        ));
        h.push_str(&line_chart(
            "Chat loss per second (by send time; late arrivals count)",
            "second of the send window",
            "% not delivered",
            &[per_second(ct, "loss_percent", "loss %")],
        ));
    }
    if ts.get("server").is_some() {
        h.push_str("<h2>Server</h2>");
        h.push_str(&line_chart(
            "Server CPU (whole process)",
            "seconds into the window",
            "% of one core",
            &[sampled(&ts["server"], "cpu_percent", "CPU %")],
        ));
    }
    if let Some(s) = out.get("server") {
        h.push_str("<table>");
        row(
            &mut h,
            "server µs CPU per forwarded packet",
            num(&s["sfu_cpu_us_per_forwarded_packet"]),
        );
        row(
            &mut h,
            "forwarded packets/s",
            num(&s["forwarded_packets_per_second"]),
        );
        row(
            &mut h,
            "server µs CPU per chat delivery",
            num(&s["cpu_us_per_delivery"]),
        );
        row(&mut h, "server RSS bytes", num(&s["rss_bytes"]));
        h.push_str("</table>");
    }
    // The full results, minus the bulky series.
    let mut rest = out.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("timeseries");
    }
    let _ = writeln!(
        h,
        "<details><summary>All results (JSON)</summary><pre>{}</pre></details></body></html>",
        esc(&serde_json::to_string_pretty(&rest).unwrap_or_default())
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chart_has_lines_and_no_scripts() {
        let l = Line {
            name: "p99 <x>".into(),
            points: vec![
                (0.0, Some(1.0)),
                (1.0, None),
                (2.0, Some(3.0)),
                (3.0, Some(2.5)),
            ],
        };
        let s = line_chart("t", "x", "y", &[l]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("<polyline"));
        assert!(s.contains("<circle")); // the lone first point
        assert!(s.contains("p99 &lt;x&gt;"));
        let empty = line_chart("t", "x", "y", &[]);
        assert!(empty.contains("no data"));
    }

    #[test]
    fn page_is_self_contained() {
        let out = json!({
            "mode": "voice", "url": "http://127.0.0.1:1", "started_unix": 1,
            "voice": {"rooms": 1, "speakers": 2, "listeners": 3, "joined": 5, "failed": 0,
                      "loss_percent": 0.0, "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0}},
            "timeseries": {"voice": {"t": [0, 1], "p50": [1.0, 1.1], "p95": [2.0, 2.1], "p99": [3.0, null],
                                     "loss_percent": [0.0, 0.0], "rx_packets": [400, 400],
                                     "join_ms_sorted": [40.0, 50.0, 60.0]},
                           "server": {"t": [1.0, 2.0], "forwarded_per_s": [400.0, 410.0], "cpu_percent": [10.0, 11.0]}},
            "thresholds": {"passed": false, "checked": ["a", "b"], "failed": ["b"]},
        });
        let page = html(&out);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(page.matches("<svg").count() >= 5);
        assert!(page.contains("FAIL"));
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert!((nice_step(0.3, 5.0) - 0.1).abs() < 1e-12);
        assert_eq!(fmt_tick(0.2, 0.1), "0.2");
    }
}
