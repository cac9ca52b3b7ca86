//! docs/metrics.md and `/metrics` list the same `confab_*` metrics, with the same types.

use crate::common::{Event, Server, TestApp};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const DOC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"));

/// Every `confab_*` word in `text`.
fn confab_words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("confab_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if boundary && end > start + "confab_".len() {
            out.insert(text[start..end].trim_end_matches('_').to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// The types the doc's tables give: rows `| `name` | type | …`.
fn documented_types() -> BTreeMap<String, String> {
    DOC.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = *cells.get(2)?;
            (name.starts_with("confab_") && ["counter", "gauge", "histogram"].contains(&kind))
                .then(|| (name.to_string(), kind.to_string()))
        })
        .collect()
}

/// `# TYPE` lines of the exposition: name → type.
fn exported_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("# TYPE ")?.split_whitespace();
            let (name, kind) = (it.next()?, it.next()?);
            name.starts_with("confab_")
                .then(|| (name.to_string(), kind.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_is_exported_and_vice_versa() {
    let app = TestApp::spawn().await;
    let a = app.register("metrics_doc").await;
    let Server { text, .. } = app.server(&a, "Metrics").await;
    let (mut gw, _) = app.identified(&a).await;
    let (s, body) = app
        .post(
            &format!("/channels/{text}/messages"),
            &a.token,
            json!({"content": "counted"}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    gw.expect(Event::MessageCreate).await;
    let exposition = app.metrics().await;

    let doc_types = documented_types();
    assert!(doc_types.len() > 30, "the doc's tables: {doc_types:?}");
    // Names mentioned anywhere in the doc (queries may use a histogram's series names).
    let mut documented = BTreeSet::new();
    for w in confab_words(DOC) {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| w.strip_suffix(s))
            .filter(|b| doc_types.get(*b).is_some_and(|t| t == "histogram"));
        documented.insert(base.map(str::to_string).unwrap_or(w));
    }
    let table: BTreeSet<String> = doc_types.keys().cloned().collect();
    assert_eq!(
        documented.difference(&table).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "confab_* names mentioned in docs/metrics.md outside its tables"
    );

    let exported = exported_types(&exposition);
    let exported_names: BTreeSet<String> = exported.keys().cloned().collect();
    let missing: Vec<_> = table.difference(&exported_names).collect();
    assert!(
        missing.is_empty(),
        "documented but not in /metrics: {missing:?}\n{exposition}"
    );
    let undocumented: Vec<_> = exported.keys().filter(|n| !table.contains(*n)).collect();
    assert!(
        undocumented.is_empty(),
        "in /metrics but not in docs/metrics.md: {undocumented:?}"
    );
    for (name, kind) in &doc_types {
        assert_eq!(&exported[name], kind, "type of {name}");
        if kind == "histogram" {
            for suffix in ["_bucket{", "_sum", "_count"] {
                assert!(
                    exposition
                        .lines()
                        .any(|l| l.starts_with(&format!("{name}{suffix}"))),
                    "histogram {name} has no {name}{suffix} series"
                );
            }
        }
        assert!(
            exposition.contains(&format!("# HELP {name} ")),
            "{name} has no # HELP line"
        );
    }
    // Counters and gauges with bounded labels exist at zero before their first event (every
    // series also carries the `node` label, first).
    for (series, label) in [
        ("confab_http_rate_limited_total{", "bucket=\"auth\""),
        ("confab_voice_leaves_total{", "reason=\"timeout\""),
        ("confab_gateway_slow_disconnects_total{", "node="),
        ("confab_sfu_connect_failures_total{", "node="),
        ("confab_build_info{", "version="),
    ] {
        assert!(
            exposition
                .lines()
                .any(|l| l.starts_with(series) && l.contains(label)),
            "{series}{label}… not in /metrics"
        );
    }
}
