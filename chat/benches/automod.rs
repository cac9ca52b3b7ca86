//! What automod adds to a send: evaluating a server's 100 rules against a message, as
//! `send_message` does before storing it (the compiled rule set is cached per server, so
//! this is all a send pays when nothing is hit).
//!
//! `cargo bench -p confab-chat --bench automod` prints p50, p99 and max per message for
//! short chat lines and for long (2,000-character) messages.

use confab_chat::safety::automod::{Rule, RuleKind, RuleSet};
use confab_chat::{ChannelId, ServerId, Snowflake};
use std::time::{Duration, Instant};

fn rule(i: i64, kind: RuleKind) -> Rule {
    Rule {
        id: Snowflake(1000 + i),
        server_id: ServerId::new(Snowflake(1)),
        name: format!("rule {i}"),
        enabled: true,
        kind,
        keywords: vec![],
        patterns: vec![],
        mention_limit: None,
        allowed_domains: vec![],
        block: true,
        block_message: None,
        alert_channel_id: None,
        timeout_seconds: None,
        exempt_roles: vec![],
        exempt_channels: vec![],
    }
}

/// 100 rules: 60 word lists of 20 words (some wildcarded), 25 rules of 2 patterns each,
/// 5 mention-spam, 5 link and 5 invite filters.
fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for i in 0..60 {
        let mut r = rule(i, RuleKind::Keyword);
        r.keywords = (0..20)
            .map(|w| match w % 4 {
                0 => format!("badword{i}x{w}"),
                1 => format!("spam{i}y{w}*"),
                2 => format!("*scam{i}z{w}"),
                _ => format!("two words {i} {w}"),
            })
            .collect();
        out.push(r);
    }
    for i in 60..85 {
        let mut r = rule(i, RuleKind::Regex);
        r.patterns = vec![
            format!(r"free\s+nitro{i}"),
            format!(r"\b\d{{3}}-\d{{2}}-\d{{4}}{i}\b"),
        ];
        out.push(r);
    }
    for i in 85..90 {
        let mut r = rule(i, RuleKind::MentionSpam);
        r.mention_limit = Some(5 + (i as i32 - 85));
        out.push(r);
    }
    for i in 90..95 {
        let mut r = rule(i, RuleKind::Links);
        r.allowed_domains = vec!["example.com".into(), "confab.example".into()];
        out.push(r);
    }
    for i in 95..100 {
        let mut r = rule(i, RuleKind::Invites);
        r.allowed_domains = vec!["confab.example".into()];
        out.push(r);
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn measure(set: &RuleSet, messages: &[String], rounds: usize) -> Vec<Duration> {
    let channel = ChannelId::new(Snowflake(7));
    let mut times = Vec::with_capacity(rounds * messages.len());
    for _ in 0..rounds {
        for m in messages {
            let t = Instant::now();
            let hits = set.evaluate(m, channel);
            std::hint::black_box(&hits);
            times.push(t.elapsed());
        }
    }
    times.sort();
    times
}

fn main() {
    let t = Instant::now();
    let set = RuleSet::compile(rules());
    println!(
        "compiled {} rules in {:.1} ms (once per change, cached per server)",
        set.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let short: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "hey <@{}> did you see the patch notes for version {i}? see https://example.com/notes and tell me what you think",
                100 + i
            )
        })
        .collect();
    let long: Vec<String> = (0..10)
        .map(|i| {
            let mut s = String::new();
            while s.len() < 2000 {
                s.push_str(&format!(
                    "Paragraph {i}: the quick brown fox jumps over the lazy dog, naïve café déjà vu. "
                ));
            }
            s
        })
        .collect();
    // Warm up caches (the regex crate's lazy DFA builds states on first use).
    measure(&set, &short, 20);
    measure(&set, &long, 20);
    // Where the time goes, by kind of rule (long messages).
    let all = rules();
    for kind in [
        RuleKind::Keyword,
        RuleKind::Regex,
        RuleKind::MentionSpam,
        RuleKind::Links,
        RuleKind::Invites,
    ] {
        let sub = RuleSet::compile(all.iter().filter(|r| r.kind == kind).cloned());
        measure(&sub, &long, 5);
        let times = measure(&sub, &long, 50);
        println!(
            "  {:?} rules only ({}): long p50 {:.1} µs",
            kind,
            sub.len(),
            percentile(&times, 0.50).as_secs_f64() * 1e6
        );
    }
    for (name, msgs, rounds) in [("short", &short, 400), ("long", &long, 200)] {
        let times = measure(&set, msgs, rounds);
        println!(
            "{name} messages ({} evaluations, 100 rules): p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            times.len(),
            percentile(&times, 0.50).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            times.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
        );
    }
}
