//! Automod rules: stored per server (MANAGE_SERVER manages them) and applied to messages
//! before they are stored, on send and on edit.

use super::automod::{Hit, Rule, RuleKind, MAX_RULES};
use super::{SafetyEvent, CODE_AUTOMOD_BLOCKED};
use crate::audit::Actor;
use crate::{permissions, ChannelId, Chat, ChatError, ChatResult, RoleId, ServerId, Snowflake};
use crate::{MessageId, UserId};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

/// A rule as clients send it (create: `name` and `kind` required; update: any field).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub kind: Option<RuleKind>,
    pub keywords: Option<Vec<String>>,
    pub patterns: Option<Vec<String>>,
    pub mention_limit: Option<i32>,
    pub allowed_domains: Option<Vec<String>>,
    pub block: Option<bool>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>)]
    pub block_message: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<String>)]
    pub alert_channel_id: Option<Option<ChannelId>>,
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Option<i32>)]
    pub timeout_seconds: Option<Option<i32>>,
    pub exempt_roles: Option<Vec<RoleId>>,
    pub exempt_channels: Option<Vec<ChannelId>>,
}

impl RuleBody {
    fn apply(self, r: &mut Rule) {
        if let Some(v) = self.name {
            r.name = v.trim().to_string();
        }
        if let Some(v) = self.enabled {
            r.enabled = v;
        }
        if let Some(v) = self.kind {
            r.kind = v;
        }
        if let Some(v) = self.keywords {
            r.keywords = v.into_iter().map(|k| k.trim().to_string()).collect();
        }
        if let Some(v) = self.patterns {
            r.patterns = v;
        }
        if let Some(v) = self.mention_limit {
            r.mention_limit = Some(v);
        }
        if let Some(v) = self.allowed_domains {
            r.allowed_domains = v
                .into_iter()
                .map(|d| d.trim().trim_start_matches("*.").to_ascii_lowercase())
                .collect();
        }
        if let Some(v) = self.block {
            r.block = v;
        }
        if let Some(v) = self.block_message {
            r.block_message = v.filter(|m| !m.trim().is_empty());
        }
        if let Some(v) = self.alert_channel_id {
            r.alert_channel_id = v;
        }
        if let Some(v) = self.timeout_seconds {
            r.timeout_seconds = v;
        }
        if let Some(mut v) = self.exempt_roles {
            v.sort();
            v.dedup();
            r.exempt_roles = v;
        }
        if let Some(mut v) = self.exempt_channels {
            v.sort();
            v.dedup();
            r.exempt_channels = v;
        }
    }
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: Snowflake,
    server_id: ServerId,
    name: String,
    enabled: bool,
    kind: String,
    keywords: Vec<String>,
    patterns: Vec<String>,
    mention_limit: Option<i32>,
    allowed_domains: Vec<String>,
    block: bool,
    block_message: Option<String>,
    alert_channel_id: Option<ChannelId>,
    timeout_seconds: Option<i32>,
    exempt_roles: Vec<i64>,
    exempt_channels: Vec<i64>,
}

impl RuleRow {
    fn into_rule(self) -> Option<Rule> {
        Some(Rule {
            id: self.id,
            server_id: self.server_id,
            name: self.name,
            enabled: self.enabled,
            kind: RuleKind::parse(&self.kind)?,
            keywords: self.keywords,
            patterns: self.patterns,
            mention_limit: self.mention_limit,
            allowed_domains: self.allowed_domains,
            block: self.block,
            block_message: self.block_message,
            alert_channel_id: self.alert_channel_id,
            timeout_seconds: self.timeout_seconds,
            exempt_roles: self
                .exempt_roles
                .into_iter()
                .map(|i| RoleId::new(Snowflake(i)))
                .collect(),
            exempt_channels: self
                .exempt_channels
                .into_iter()
                .map(|i| ChannelId::new(Snowflake(i)))
                .collect(),
        })
    }
}

const RULE_COLUMNS: &str = "id, server_id, name, enabled, kind, keywords, patterns, mention_limit,
    allowed_domains, block, block_message, alert_channel_id, timeout_seconds, exempt_roles,
    exempt_channels";

impl Chat {
    pub(crate) async fn load_rules(&self, server_id: ServerId) -> ChatResult<Vec<Rule>> {
        let rows: Vec<RuleRow> = sqlx::query_as(q!(
            "SELECT {RULE_COLUMNS} FROM automod_rules WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(RuleRow::into_rule).collect())
    }

    /// The server's rules (MANAGE_SERVER).
    pub async fn automod_rules(
        &self,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<Vec<Rule>> {
        self.require(
            server_id,
            user_id,
            permissions::MANAGE_SERVER,
            "you may not manage automod rules",
        )
        .await?;
        self.load_rules(server_id).await
    }

    async fn rule_in(&self, server_id: ServerId, rule_id: Snowflake) -> ChatResult<Rule> {
        let row: Option<RuleRow> = sqlx::query_as(q!(
            "SELECT {RULE_COLUMNS} FROM automod_rules WHERE id = $1 AND server_id = $2"
        ))
        .bind(rule_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?;
        row.and_then(RuleRow::into_rule)
            .ok_or(ChatError::NotFound("automod rule"))
    }

    /// Checks what a rule refers to: its alert channel, exempt channels and roles must be
    /// this server's.
    async fn check_references(&self, r: &Rule) -> ChatResult<()> {
        if let Some(ch) = r.alert_channel_id {
            self.check_alert_channel(r.server_id, ch).await?;
        }
        if !r.exempt_channels.is_empty() {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM channels WHERE server_id = $1 AND id = ANY($2)",
            )
            .bind(r.server_id)
            .bind(
                r.exempt_channels
                    .iter()
                    .map(|c| c.get())
                    .collect::<Vec<_>>(),
            )
            .fetch_one(&self.pool)
            .await?;
            if n as usize != r.exempt_channels.len() {
                return Err(ChatError::field(
                    "exempt_channels",
                    "must be channels of this server",
                ));
            }
        }
        if !r.exempt_roles.is_empty() {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM roles WHERE server_id = $1 AND id = ANY($2)",
            )
            .bind(r.server_id)
            .bind(r.exempt_roles.iter().map(|c| c.get()).collect::<Vec<_>>())
            .fetch_one(&self.pool)
            .await?;
            if n as usize != r.exempt_roles.len() {
                return Err(ChatError::field(
                    "exempt_roles",
                    "must be roles of this server",
                ));
            }
        }
        Ok(())
    }

    async fn save_rule(&self, r: &Rule, tx: &mut sqlx::PgConnection) -> ChatResult<()> {
        sqlx::query(
            "INSERT INTO automod_rules (id, server_id, name, enabled, kind, keywords, patterns,
                 mention_limit, allowed_domains, block, block_message, alert_channel_id,
                 timeout_seconds, exempt_roles, exempt_channels)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (id) DO UPDATE SET name = $3, enabled = $4, kind = $5, keywords = $6,
                 patterns = $7, mention_limit = $8, allowed_domains = $9, block = $10,
                 block_message = $11, alert_channel_id = $12, timeout_seconds = $13,
                 exempt_roles = $14, exempt_channels = $15",
        )
        .bind(r.id)
        .bind(r.server_id)
        .bind(&r.name)
        .bind(r.enabled)
        .bind(r.kind.as_str())
        .bind(&r.keywords)
        .bind(&r.patterns)
        .bind(r.mention_limit)
        .bind(&r.allowed_domains)
        .bind(r.block)
        .bind(&r.block_message)
        .bind(r.alert_channel_id)
        .bind(r.timeout_seconds)
        .bind(r.exempt_roles.iter().map(|c| c.get()).collect::<Vec<_>>())
        .bind(
            r.exempt_channels
                .iter()
                .map(|c| c.get())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Creates a rule (MANAGE_SERVER); audit `automod_rule_create`.
    pub async fn create_automod_rule(
        &self,
        server_id: ServerId,
        actor: Actor<'_>,
        body: RuleBody,
    ) -> ChatResult<Rule> {
        self.require(
            server_id,
            actor.user_id,
            permissions::MANAGE_SERVER,
            "you may not manage automod rules",
        )
        .await?;
        if body.name.is_none() {
            return Err(ChatError::field("name", "required"));
        }
        let Some(kind) = body.kind else {
            return Err(ChatError::field(
                "kind",
                "required: keyword, regex, mention_spam, links or invites",
            ));
        };
        let mut rule = Rule {
            id: self.next_id(),
            server_id,
            name: String::new(),
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
        };
        body.apply(&mut rule);
        rule.validate()?;
        self.check_references(&rule).await?;
        let mut tx = self.pool.begin().await?;
        // Serialises creations per server so the count below holds.
        sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR UPDATE")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM automod_rules WHERE server_id = $1")
            .bind(server_id)
            .fetch_one(&mut *tx)
            .await?;
        if n as usize >= MAX_RULES {
            return Err(ChatError::Refused(format!(
                "a server has at most {MAX_RULES} automod rules"
            )));
        }
        self.save_rule(&rule, &mut tx).await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "automod_rule_create",
            Some(rule.id),
            json!({"name": rule.name, "kind": rule.kind}),
        )
        .await?;
        tx.commit().await?;
        self.invalidate_safety(server_id);
        Ok(rule)
    }

    /// Changes a rule (MANAGE_SERVER); audit `automod_rule_update`.
    pub async fn update_automod_rule(
        &self,
        server_id: ServerId,
        rule_id: Snowflake,
        actor: Actor<'_>,
        body: RuleBody,
    ) -> ChatResult<Rule> {
        self.require(
            server_id,
            actor.user_id,
            permissions::MANAGE_SERVER,
            "you may not manage automod rules",
        )
        .await?;
        let before = self.rule_in(server_id, rule_id).await?;
        let mut rule = before.clone();
        body.apply(&mut rule);
        rule.validate()?;
        self.check_references(&rule).await?;
        let mut tx = self.pool.begin().await?;
        self.save_rule(&rule, &mut tx).await?;
        let (b, a) = (
            serde_json::to_value(&before).unwrap_or_default(),
            serde_json::to_value(&rule).unwrap_or_default(),
        );
        let mut changes = serde_json::Map::new();
        for (k, v) in a.as_object().into_iter().flatten() {
            if b.get(k) != Some(v) {
                changes.insert(k.clone(), json!({"old": b.get(k), "new": v}));
            }
        }
        self.audit(
            &mut tx,
            server_id,
            actor,
            "automod_rule_update",
            Some(rule.id),
            serde_json::Value::Object(changes),
        )
        .await?;
        tx.commit().await?;
        self.invalidate_safety(server_id);
        Ok(rule)
    }

    /// Deletes a rule (MANAGE_SERVER); audit `automod_rule_delete`.
    pub async fn delete_automod_rule(
        &self,
        server_id: ServerId,
        rule_id: Snowflake,
        actor: Actor<'_>,
    ) -> ChatResult<()> {
        self.require(
            server_id,
            actor.user_id,
            permissions::MANAGE_SERVER,
            "you may not manage automod rules",
        )
        .await?;
        let rule = self.rule_in(server_id, rule_id).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM automod_rules WHERE id = $1 AND server_id = $2")
            .bind(rule_id)
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "automod_rule_delete",
            Some(rule_id),
            json!({"name": rule.name, "kind": rule.kind}),
        )
        .await?;
        tx.commit().await?;
        self.invalidate_safety(server_id);
        Ok(())
    }

    /// Runs the server's automod rules on a message about to be stored (sent, or edited into
    /// `content`). Nothing to do is the common case and costs no query. When rules are hit,
    /// the author's access is checked first (a stranger's attempt triggers nothing), exempt
    /// authors pass, and each remaining hit is audit-logged with its actions (alert, timeout)
    /// in one transaction. A blocking hit refuses the message, naming the rule.
    pub(crate) async fn run_automod(
        &self,
        server_id: ServerId,
        channel_id: ChannelId,
        author: UserId,
        content: &str,
        edited: Option<MessageId>,
    ) -> ChatResult<()> {
        let safety = self.server_safety(server_id).await?;
        if safety.rules.is_empty() {
            return Ok(());
        }
        let hits = safety.rules.evaluate(content, channel_id);
        if hits.is_empty() {
            return Ok(());
        }
        // Only a member who may post here can trigger anything; others get the usual answer.
        let (_, perms) = self.channel_access(channel_id, author).await?;
        if !permissions::has(perms, permissions::SEND_MESSAGES) {
            return Err(ChatError::Forbidden("you may not send messages here"));
        }
        let access = self
            .member_access(server_id, author)
            .await?
            .ok_or(ChatError::NotFound("channel"))?;
        let base = access.base();
        if access.context.is_owner
            || base.contains(permissions::ADMINISTRATOR)
            || base.contains(permissions::MANAGE_SERVER)
        {
            return Ok(());
        }
        let hits: Vec<Hit<'_>> = hits
            .into_iter()
            .filter(|h| {
                !h.rule
                    .exempt_roles
                    .iter()
                    .any(|r| access.role_ids.contains(r))
            })
            .collect();
        if hits.is_empty() {
            return Ok(());
        }
        let excerpt: String = content.chars().take(500).collect();
        let mut tx = self.pool.begin().await?;
        let mut alerts = Vec::new();
        let mut timeout: Option<i32> = None;
        for h in &hits {
            let r = h.rule;
            let mut actions = Vec::new();
            if r.block {
                actions.push("block");
            }
            if let Some(ch) = r.alert_channel_id {
                actions.push("alert");
                let verb = if r.block { "blocked" } else { "flagged" };
                let text = format!(
                    "AutoMod: rule \"{}\" {verb} a message by <@{author}> in <#{channel_id}> (matched: {}):\n> {}",
                    r.name,
                    h.matched,
                    excerpt.replace('\n', "\n> ")
                );
                alerts.push(self.post_alert(&mut tx, ch, author, &text).await?);
            }
            if let Some(t) = r.timeout_seconds {
                actions.push("timeout");
                timeout = Some(timeout.map_or(t, |x| x.max(t)));
            }
            sqlx::query(
                "INSERT INTO audit_log (id, server_id, actor_id, action, target_id, changes)
                 VALUES ($1, $2, NULL, 'automod_trigger', $3, $4)",
            )
            .bind(self.next_id::<Snowflake>())
            .bind(server_id)
            .bind(author)
            .bind(json!({
                "rule_id": r.id, "rule_name": r.name, "kind": r.kind, "channel_id": channel_id,
                "message_id": edited, "matched": h.matched, "content": excerpt,
                "actions": actions, "timeout_seconds": r.timeout_seconds,
            }))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(secs) = timeout {
            let until = Utc::now() + Duration::seconds(secs as i64);
            sqlx::query(
                "UPDATE members SET timeout_until = greatest(coalesce(timeout_until, $3), $3)
                 WHERE server_id = $1 AND user_id = $2",
            )
            .bind(server_id)
            .bind(author)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        metrics::counter!("confab_automod_triggers_total").increment(hits.len() as u64);
        for id in alerts {
            let m = self.message_by_id(id).await?;
            self.safety_event(SafetyEvent::AlertPosted(Box::new(m)));
        }
        if timeout.is_some() {
            self.safety_event(SafetyEvent::TimedOut {
                server_id,
                user_id: author,
            });
        }
        if let Some(h) = hits.iter().find(|h| h.rule.block) {
            let r = h.rule;
            let message = match &r.block_message {
                Some(m) => format!("Blocked by AutoMod rule \"{}\": {m}", r.name),
                None => format!(
                    "Blocked by AutoMod rule \"{}\": this message is not allowed here",
                    r.name
                ),
            };
            return Err(ChatError::Safety {
                code: CODE_AUTOMOD_BLOCKED,
                message,
            });
        }
        Ok(())
    }
}
