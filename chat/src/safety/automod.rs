//! The automod engine: a server's rules compiled once into matchers, then evaluated against
//! each message before it is stored. Pure (no I/O), so it is unit-tested and benchmarked
//! (`cargo bench -p confab-chat --bench automod`) without a database.
//!
//! Matching is linear in the message's length whatever the rules say: keyword lists and
//! user patterns are compiled by the `regex` crate (finite automata, no backtracking) under a
//! size limit, so a hostile pattern is refused when it is saved, never slow when it runs.

use crate::messages::mentions;
use crate::{ChannelId, ChatError, ChatResult, RoleId};
use aho_corasick::AhoCorasick;
use regex::{Regex, RegexBuilder, RegexSetBuilder};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use utoipa::ToSchema;

/// Most rules per server.
pub const MAX_RULES: usize = 100;
/// Most keywords in one rule, and the longest keyword.
pub const MAX_KEYWORDS: usize = 1000;
pub const MAX_KEYWORD_LEN: usize = 60;
/// Most patterns in one rule, and the longest pattern (Discord's limits).
pub const MAX_PATTERNS: usize = 10;
pub const MAX_PATTERN_LEN: usize = 260;
/// Most allowed domains in one rule.
pub const MAX_DOMAINS: usize = 100;
/// Compiled size allowed for one rule's automaton. Generous for real word lists and
/// patterns; `\w{1000}{1000}` and the like exceed it and are refused when saved.
const REGEX_SIZE_LIMIT: usize = 2 << 20;
const DFA_SIZE_LIMIT: usize = 2 << 20;

/// What a rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Whole words or phrases, case-insensitive; `*` at either end of a keyword matches any
    /// letters there (`spam*`, `*spam`, `*spam*`).
    Keyword,
    /// Regular expressions (the `regex` crate's syntax), case-insensitive.
    Regex,
    /// More than `mention_limit` distinct user and role mentions.
    MentionSpam,
    /// Any link (`http://`, `https://` or `www.`) whose host is not an allowed domain.
    Links,
    /// Invite links (`…/invite/CODE`, `discord.gg/CODE`) to hosts not in the allowed domains.
    Invites,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Keyword => "keyword",
            RuleKind::Regex => "regex",
            RuleKind::MentionSpam => "mention_spam",
            RuleKind::Links => "links",
            RuleKind::Invites => "invites",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "keyword" => RuleKind::Keyword,
            "regex" => RuleKind::Regex,
            "mention_spam" => RuleKind::MentionSpam,
            "links" => RuleKind::Links,
            "invites" => RuleKind::Invites,
            _ => return None,
        })
    }
}

/// A rule as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Rule {
    pub id: crate::Snowflake,
    pub server_id: crate::ServerId,
    pub name: String,
    pub enabled: bool,
    pub kind: RuleKind,
    /// `keyword` rules.
    pub keywords: Vec<String>,
    /// `regex` rules.
    pub patterns: Vec<String>,
    /// `mention_spam` rules: more distinct mentions than this trigger.
    pub mention_limit: Option<i32>,
    /// `links` and `invites` rules: hosts (and their subdomains) that pass.
    pub allowed_domains: Vec<String>,
    /// Refuse the message; the sender is told the rule's name and `block_message`.
    pub block: bool,
    pub block_message: Option<String>,
    /// Post an alert about the message into this channel.
    pub alert_channel_id: Option<ChannelId>,
    /// Time the author out for this many seconds.
    pub timeout_seconds: Option<i32>,
    /// Members with any of these roles are not checked.
    pub exempt_roles: Vec<RoleId>,
    /// Messages in these channels are not checked.
    pub exempt_channels: Vec<ChannelId>,
}

impl Rule {
    /// Checks the rule's fields; the matcher it compiles to, or the field that is wrong.
    pub fn validate(&self) -> ChatResult<Matcher> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ChatError::field("name", "must be 1-100 characters"));
        }
        if let Some(m) = &self.block_message {
            if m.chars().count() > 150 {
                return Err(ChatError::field(
                    "block_message",
                    "must be at most 150 characters",
                ));
            }
        }
        if let Some(t) = self.timeout_seconds {
            if !(1..=2_419_200).contains(&t) {
                return Err(ChatError::field(
                    "timeout_seconds",
                    "must be 1-2419200 (28 days)",
                ));
            }
        }
        // Checked whatever the kind: a rule keeps every field, and the column refuses more.
        if self.mention_limit.is_some_and(|n| !(1..=50).contains(&n)) {
            return Err(ChatError::field("mention_limit", "must be 1-50"));
        }
        if self.keywords.len() > MAX_KEYWORDS || self.patterns.len() > MAX_PATTERNS {
            return Err(ChatError::field(
                "keywords",
                "at most 1000 keywords and 10 patterns",
            ));
        }
        if !self.block && self.alert_channel_id.is_none() && self.timeout_seconds.is_none() {
            return Err(ChatError::field(
                "block",
                "a rule needs an action: block, alert_channel_id or timeout_seconds",
            ));
        }
        if self.exempt_roles.len() > 20 || self.exempt_channels.len() > 50 {
            return Err(ChatError::field(
                "exempt_roles",
                "at most 20 exempt roles and 50 exempt channels",
            ));
        }
        Matcher::compile(self)
    }
}

/// A rule's compiled test.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// A keyword rule's words, lower-cased, with whether `*` frees each end. They are matched
    /// by the rule set's one automaton (`RuleSet`), or by `Keywords::find` alone.
    Keywords(Keywords),
    /// One automaton for all of a regex rule's patterns.
    Pattern(Regex),
    Mentions(usize),
    Links(Vec<String>),
    Invites(Vec<String>),
}

/// A user pattern with `\b`/`\B` as ASCII word boundaries. Unicode word boundaries make the
/// regex crate leave its DFA for a far slower (still linear) engine on any message with a
/// non-ASCII character; ASCII boundaries keep every rule on the DFA (docs/safety.md).
fn ascii_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push_str("(?-u:\\b)"),
            Some('B') => out.push_str("(?-u:\\B)"),
            Some(n) => {
                out.push('\\');
                out.push(n);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn build(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
}

/// One keyword: lower-cased text, and whether its start and end must be word edges (no `*`
/// there). Matching is by lower-cased text: Unicode-aware, and with a literal automaton, which
/// reads a message once for every keyword of a server (a regex per word list with `\b`
/// would read it once per rule, and far slower on non-ASCII text).
#[derive(Debug, Clone)]
pub struct Keyword {
    text: String,
    whole_start: bool,
    whole_end: bool,
}

impl Keyword {
    fn parse(k: &str) -> Self {
        Self {
            whole_start: !k.starts_with('*'),
            whole_end: !(k.ends_with('*') && k.len() > 1),
            text: k.trim_matches('*').to_lowercase(),
        }
    }

    /// Whether an occurrence at `start..end` of lower-cased `hay` has the edges it needs.
    fn edges_ok(&self, hay: &str, start: usize, end: usize) -> bool {
        let word = |c: char| c.is_alphanumeric() || c == '_';
        (!self.whole_start || !hay[..start].chars().next_back().is_some_and(word))
            && (!self.whole_end || !hay[end..].chars().next().is_some_and(word))
    }
}

/// A keyword rule's words.
#[derive(Debug, Clone)]
pub struct Keywords {
    words: Vec<Keyword>,
}

impl Keywords {
    /// The first keyword found in lower-cased `hay` (for a rule checked on its own).
    fn find(&self, hay: &str) -> Option<String> {
        let ac = AhoCorasick::new(self.words.iter().map(|w| &w.text)).ok()?;
        ac.find_overlapping_iter(hay).find_map(|m| {
            let w = &self.words[m.pattern().as_usize()];
            w.edges_ok(hay, m.start(), m.end())
                .then(|| excerpt(&hay[m.start()..m.end()]))
        })
    }
}

fn clean_domains(domains: &[String]) -> ChatResult<Vec<String>> {
    if domains.len() > MAX_DOMAINS {
        return Err(ChatError::field("allowed_domains", "at most 100 domains"));
    }
    let mut out = Vec::with_capacity(domains.len());
    for d in domains {
        let d = d.trim().trim_start_matches("*.").to_ascii_lowercase();
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(ChatError::field(
                "allowed_domains",
                "each must be a host name such as example.com",
            ));
        }
        out.push(d);
    }
    Ok(out)
}

impl Matcher {
    pub fn compile(rule: &Rule) -> ChatResult<Matcher> {
        match rule.kind {
            RuleKind::Keyword => {
                if rule.keywords.is_empty() || rule.keywords.len() > MAX_KEYWORDS {
                    return Err(ChatError::field("keywords", "give 1-1000 keywords"));
                }
                let mut words = Vec::with_capacity(rule.keywords.len());
                for k in &rule.keywords {
                    let k = k.trim();
                    if k.trim_matches('*').trim().is_empty() || k.chars().count() > MAX_KEYWORD_LEN
                    {
                        return Err(ChatError::field(
                            "keywords",
                            "each keyword must be 1-60 characters besides *",
                        ));
                    }
                    words.push(Keyword::parse(k));
                }
                Ok(Matcher::Keywords(Keywords { words }))
            }
            RuleKind::Regex => {
                if rule.patterns.is_empty() || rule.patterns.len() > MAX_PATTERNS {
                    return Err(ChatError::field("patterns", "give 1-10 patterns"));
                }
                for p in &rule.patterns {
                    if p.is_empty() || p.chars().count() > MAX_PATTERN_LEN {
                        return Err(ChatError::field(
                            "patterns",
                            "each pattern must be 1-260 characters",
                        ));
                    }
                    // Each on its own first, so the error names the pattern that is wrong.
                    if let Err(e) = build(&ascii_boundaries(p)) {
                        return Err(ChatError::field("patterns", pattern_error(p, &e)));
                    }
                }
                let joined = rule
                    .patterns
                    .iter()
                    .map(|p| format!("(?:{})", ascii_boundaries(p)))
                    .collect::<Vec<_>>()
                    .join("|");
                build(&joined).map(Matcher::Pattern).map_err(|_| {
                    ChatError::field("patterns", "these patterns together are too large")
                })
            }
            RuleKind::MentionSpam => match rule.mention_limit {
                Some(n @ 1..=50) => Ok(Matcher::Mentions(n as usize)),
                _ => Err(ChatError::field("mention_limit", "must be 1-50")),
            },
            RuleKind::Links => Ok(Matcher::Links(clean_domains(&rule.allowed_domains)?)),
            RuleKind::Invites => Ok(Matcher::Invites(clean_domains(&rule.allowed_domains)?)),
        }
    }

    /// What in `content` triggers this matcher (a short excerpt), if anything.
    pub fn find(&self, content: &str) -> Option<String> {
        match self {
            Matcher::Keywords(k) => k.find(&content.to_lowercase()),
            Matcher::Pattern(re) => re.find(content).map(|m| excerpt(m.as_str())),
            Matcher::Mentions(limit) => {
                let p = mentions::parse(content);
                let n = p.users.len() + p.roles.len();
                (n > *limit).then(|| format!("{n} mentions"))
            }
            Matcher::Links(allowed) => LINK
                .captures_iter(content)
                .filter_map(|c| c.get(1))
                .map(|h| host_of(h.as_str()))
                .find(|h| !allowed_host(h, allowed)),
            Matcher::Invites(allowed) => INVITE.captures_iter(content).find_map(|c| {
                let host = c
                    .get(1)
                    .or_else(|| c.get(2))
                    .map(|h| host_of(h.as_str()))
                    .unwrap_or_default();
                let whole = c.get(0).map_or("", |m| m.as_str());
                (!allowed_host(&host, allowed)).then(|| excerpt(whole))
            }),
        }
    }
}

fn pattern_error(p: &str, e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(_) => {
            format!("pattern {p:?} is too large once compiled; simplify it")
        }
        _ => format!("pattern {p:?} is not a valid regular expression"),
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Links: a scheme or `www.`, then the host (up to a port, path, query or the end).
/// (ASCII `\b`: see `ascii_boundaries`.)
static LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:(?-u:\b)https?://|(?-u:\b)www\.)([^\s/?#<>()\[\]'`]+)")
        .expect("link pattern")
});
/// Invite links: `host/invite/CODE` (Confab's own and Discord's long form) and `discord.gg/CODE`.
static INVITE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:https?://)?((?:[a-z0-9-]+\.)*[a-z0-9-]+(?::\d+)?)/invite/[a-z0-9_-]{2,32}|(?:https?://)?(discord\.gg)/[a-z0-9_-]{2,32}",
    )
    .expect("invite pattern")
});

fn host_of(s: &str) -> String {
    // Drop user info and a port; what remains is compared lower-case.
    let s = s.rsplit('@').next().unwrap_or(s);
    let s = s.split(':').next().unwrap_or(s);
    s.trim_end_matches('.').to_ascii_lowercase()
}

fn allowed_host(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|d| {
        host == d
            || (host.len() > d.len()
                && host.ends_with(d.as_str())
                && host.as_bytes()[host.len() - d.len() - 1] == b'.')
    })
}

/// A compiled rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: Rule,
    pub matcher: Matcher,
}

/// What one rule found in a message.
#[derive(Debug, Clone)]
pub struct Hit<'a> {
    pub rule: &'a Rule,
    /// The text that triggered it (or what was counted).
    pub matched: String,
}

/// A server's enabled rules, compiled. Built once per change and shared by every send.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    /// Every keyword of every keyword rule in one automaton, so a message is read once for
    /// all of them; pattern `i` is keyword `words[i].1` of rule `words[i].0`.
    keywords: Option<AhoCorasick>,
    words: Vec<(usize, usize)>,
    /// Every regex rule's automaton in one set, read once: a rule's own regex then runs only
    /// when the set says it matched (for the excerpt). Pattern `i` is rule `pattern_rules[i]`'s.
    /// None with fewer than two such rules, or when the set would be too large.
    patterns: Option<regex::RegexSet>,
    pattern_rules: Vec<usize>,
}

/// Compiled size allowed for a server's combined regex set.
const SET_SIZE_LIMIT: usize = 16 << 20;

impl RuleSet {
    /// Compiles the enabled rules; a stored rule that no longer compiles is skipped (logged).
    pub fn compile(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut out = Vec::new();
        for rule in rules.into_iter().filter(|r| r.enabled) {
            match Matcher::compile(&rule) {
                Ok(matcher) => out.push(CompiledRule { rule, matcher }),
                Err(e) => tracing::warn!(rule = %rule.id, error = ?e, "automod rule skipped"),
            }
        }
        let mut texts = Vec::new();
        let mut words = Vec::new();
        for (i, c) in out.iter().enumerate() {
            if let Matcher::Keywords(k) = &c.matcher {
                for (j, w) in k.words.iter().enumerate() {
                    texts.push(w.text.as_str());
                    words.push((i, j));
                }
            }
        }
        let keywords = if texts.is_empty() {
            None
        } else {
            match AhoCorasick::new(&texts) {
                Ok(ac) => Some(ac),
                Err(e) => {
                    // Each keyword rule then builds its own automaton per message.
                    tracing::warn!(error = %e, "automod keywords checked rule by rule");
                    words.clear();
                    None
                }
            }
        };
        let mut sources = Vec::new();
        let mut pattern_rules = Vec::new();
        for (i, c) in out.iter().enumerate() {
            if let Matcher::Pattern(re) = &c.matcher {
                sources.push(re.as_str().to_string());
                pattern_rules.push(i);
            }
        }
        let patterns = if sources.len() > 1 {
            RegexSetBuilder::new(&sources)
                .case_insensitive(true)
                .size_limit(SET_SIZE_LIMIT)
                .dfa_size_limit(SET_SIZE_LIMIT)
                .build()
                .map_err(|e| tracing::info!(error = %e, "automod patterns checked rule by rule"))
                .ok()
        } else {
            None
        };
        Self {
            rules: out,
            keywords,
            words,
            patterns,
            pattern_rules,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules `content` triggers in `channel_id` (channel exemptions applied; role
    /// exemptions are the caller's, who knows the author's roles and loads them only when
    /// something was hit).
    pub fn evaluate(&self, content: &str, channel_id: ChannelId) -> Vec<Hit<'_>> {
        let checked = |c: &CompiledRule| !c.rule.exempt_channels.contains(&channel_id);
        // Keyword rules first, all in one pass over the lower-cased message.
        let mut keyword_hits: Vec<Option<String>> = vec![None; self.rules.len()];
        let lower;
        if let Some(ac) = &self.keywords {
            lower = content.to_lowercase();
            let mut left = self
                .rules
                .iter()
                .filter(|c| matches!(c.matcher, Matcher::Keywords(_)) && checked(c))
                .count();
            for m in ac.find_overlapping_iter(&lower) {
                if left == 0 {
                    break;
                }
                let (i, j) = self.words[m.pattern().as_usize()];
                let c = &self.rules[i];
                let Matcher::Keywords(k) = &c.matcher else {
                    continue;
                };
                if keyword_hits[i].is_none()
                    && checked(c)
                    && k.words[j].edges_ok(&lower, m.start(), m.end())
                {
                    keyword_hits[i] = Some(excerpt(&lower[m.start()..m.end()]));
                    left -= 1;
                }
            }
        }
        // Regex rules: which may match, in one pass.
        let mut may_match = vec![true; self.rules.len()];
        if let Some(set) = &self.patterns {
            let matched = set.matches(content);
            for (p, &i) in self.pattern_rules.iter().enumerate() {
                may_match[i] = matched.matched(p);
            }
        }
        let mut hits = Vec::new();
        for ((c, kw), may) in self.rules.iter().zip(keyword_hits).zip(may_match) {
            if !may || !checked(c) {
                continue;
            }
            let found = match (&c.matcher, &self.keywords) {
                (Matcher::Keywords(_), Some(_)) => kw,
                (m, _) => m.find(content),
            };
            if let Some(matched) = found {
                hits.push(Hit {
                    rule: &c.rule,
                    matched,
                });
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServerId, Snowflake};

    fn rule(kind: RuleKind) -> Rule {
        Rule {
            id: Snowflake(1),
            server_id: ServerId::new(Snowflake(2)),
            name: "r".into(),
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

    /// Whether `r` triggers on `s`, checked alone and in a rule set (which must agree).
    fn hit(r: &Rule, s: &str) -> bool {
        let alone = r.validate().unwrap().find(s).is_some();
        let set = RuleSet::compile([r.clone()]);
        let in_set = !set.evaluate(s, ChannelId::new(Snowflake(1))).is_empty();
        assert_eq!(alone, in_set, "{s:?}");
        alone
    }

    #[test]
    fn keywords_are_whole_words_unless_wildcarded() {
        let mut r = rule(RuleKind::Keyword);
        r.keywords = vec!["cat".into(), "dog*".into(), "*fish".into(), "*bird*".into()];
        assert!(hit(&r, "a CAT here"));
        assert!(!hit(&r, "concatenate"));
        assert!(hit(&r, "doghouse"));
        assert!(!hit(&r, "hotdog"));
        assert!(hit(&r, "swordfish"));
        assert!(!hit(&r, "fishy"));
        assert!(hit(&r, "ladybirds"));
        assert!(!hit(&r, "nothing to see"));
        // Word edges are Unicode-aware, also where a message or a keyword is not ASCII.
        r.keywords = vec!["café".into(), "bar".into()];
        assert!(hit(&r, "un café, noir"));
        assert!(hit(&r, "café"));
        assert!(!hit(&r, "cafébar"));
        assert!(!hit(&r, "cafés"));
        assert!(hit(&r, "déjà bar"));
        // Regex syntax in a keyword is literal.
        r.keywords = vec!["a.b".into()];
        assert!(hit(&r, "x a.b y"));
        assert!(!hit(&r, "x acb y"));
    }

    #[test]
    fn hostile_patterns_are_refused_or_linear() {
        let mut r = rule(RuleKind::Regex);
        r.patterns = vec![r"\w{1000}{1000}".into()];
        assert!(r.validate().is_err());
        r.patterns = vec!["(".into()];
        assert!(r.validate().is_err());
        // Catastrophic for a backtracking engine; linear here.
        r.patterns = vec!["(a+)+$".into()];
        let m = r.validate().unwrap();
        let s = "a".repeat(4000) + "!";
        let t = std::time::Instant::now();
        assert!(m.find(&s).is_none());
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn pattern_boundaries_are_ascii() {
        assert_eq!(
            ascii_boundaries(r"\bx\B\\b[a-b]"),
            r"(?-u:\b)x(?-u:\B)\\b[a-b]"
        );
        let mut r = rule(RuleKind::Regex);
        r.patterns = vec![r"\bscam\b".into()];
        assert!(hit(&r, "déjà scam!"));
        assert!(!hit(&r, "scams"));
    }

    #[test]
    fn mentions_links_and_invites() {
        let mut r = rule(RuleKind::MentionSpam);
        r.mention_limit = Some(2);
        assert!(!hit(&r, "<@1> <@2> <@1>"));
        assert!(hit(&r, "<@1> <@2> <@3>"));
        let mut r = rule(RuleKind::Links);
        r.allowed_domains = vec!["example.com".into()];
        assert!(!hit(&r, "see https://docs.example.com/x"));
        assert!(!hit(&r, "see https://example.com"));
        assert!(hit(&r, "see https://badexample.com"));
        assert!(hit(&r, "see www.evil.net/path"));
        assert!(!hit(&r, "no links"));
        let mut r = rule(RuleKind::Invites);
        r.allowed_domains = vec!["chat.example.org".into()];
        assert!(hit(&r, "join discord.gg/abcd"));
        assert!(hit(
            &r,
            "join https://other.example:3000/invite/hTKzmak now"
        ));
        assert!(!hit(&r, "join https://chat.example.org/invite/hTKzmak"));
        assert!(!hit(&r, "https://example.com/invitation"));
    }

    #[test]
    fn exempt_channels_and_actions() {
        let mut r = rule(RuleKind::Keyword);
        r.keywords = vec!["x".into()];
        r.exempt_channels = vec![ChannelId::new(Snowflake(9))];
        let set = RuleSet::compile([r.clone()]);
        assert_eq!(set.evaluate("x", ChannelId::new(Snowflake(9))).len(), 0);
        assert_eq!(set.evaluate("x", ChannelId::new(Snowflake(8))).len(), 1);
        r.block = false;
        assert!(r.validate().is_err());
    }
}
