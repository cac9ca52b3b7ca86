//! Safety at scale: automod rules checked before a message is stored, raid protection with
//! verification levels, and members' reports (`reports`).
//!
//! Every send needs a server's rules and settings, so they are compiled once and cached per
//! server (`SafetyCache`). A change drops the server's entry: the node that made it at once,
//! the others when the signaling layer's bus delivers `SafetyChanged` (see `invalidate`).
//! What must reach live sessions (alert messages, automod timeouts, raid mode) is handed to
//! the signaling layer as `SafetyEvent`s.

pub mod automod;
pub mod reports;
pub mod rules;

use crate::model::Message;
use crate::{permissions, ChannelId, Chat, ChatError, ChatResult, ServerId, Snowflake, UserId};
use automod::RuleSet;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use utoipa::ToSchema;

/// Message flag of an alert posted by automod or raid protection (the author is the member
/// the alert is about; clients show it as a system notice).
pub const ALERT_FLAG: i32 = 1 << 24;

/// Error codes of safety refusals (docs/safety.md).
pub const CODE_AUTOMOD_BLOCKED: u32 = 200000;
pub const CODE_VERIFICATION_LEVEL: u32 = 50009;
pub const CODE_VERIFY_FIRST: u32 = 200010;
pub const CODE_RAID_RESTRICTED: u32 = 200011;
pub const CODE_RAID_JOIN_REFUSED: u32 = 200012;

/// A server's safety settings.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct SafetySettings {
    pub server_id: ServerId,
    /// 0 none, 2 medium (account older than 5 minutes), 3 high (also a member for 10
    /// minutes), 4 highest (also every newcomer confirms "I am human"). 1 (verified email) is
    /// not offered: Confab does not verify email addresses.
    pub verification_level: i16,
    /// This many joins within `raid_join_window_secs` turn raid mode on (0 = never).
    pub raid_join_threshold: i32,
    pub raid_join_window_secs: i32,
    /// In raid mode, newcomers may not post for this many minutes.
    pub raid_restrict_minutes: i32,
    /// In raid mode, accounts younger than this many seconds may not join (0 = any age).
    pub raid_min_account_age_secs: i32,
    pub raid_mode: bool,
    pub raid_mode_since: Option<DateTime<Utc>>,
    /// Where raid alerts are posted (a text channel of the server).
    pub alert_channel_id: Option<ChannelId>,
}

impl SafetySettings {
    fn defaults(server_id: ServerId) -> Self {
        Self {
            server_id,
            verification_level: 0,
            raid_join_threshold: 0,
            raid_join_window_secs: 10,
            raid_restrict_minutes: 10,
            raid_min_account_age_secs: 0,
            raid_mode: false,
            raid_mode_since: None,
            alert_channel_id: None,
        }
    }

    /// Whether a send must take the exact path, where verification is checked.
    pub(crate) fn gates_sends(&self) -> bool {
        self.verification_level >= 2
    }
}

/// A change to the safety settings; absent fields stay.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SafetyPatch {
    pub verification_level: Option<i16>,
    pub raid_join_threshold: Option<i32>,
    pub raid_join_window_secs: Option<i32>,
    pub raid_restrict_minutes: Option<i32>,
    pub raid_min_account_age_secs: Option<i32>,
    /// Turn raid mode on or off by hand (MANAGE_SERVER or MODERATE_MEMBERS).
    pub raid_mode: Option<bool>,
    /// A text channel of this server, or null for none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub alert_channel_id: Option<Option<ChannelId>>,
}

fn nullable<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// What the signaling layer must tell live sessions after a safety action.
#[derive(Debug, Clone)]
pub enum SafetyEvent {
    /// An alert message was posted (MESSAGE_CREATE).
    AlertPosted(Box<Message>),
    /// Automod timed a member out.
    TimedOut {
        server_id: ServerId,
        user_id: UserId,
    },
    /// Raid mode turned on (by the join rate when `by` is None) or off.
    RaidMode {
        server_id: ServerId,
        on: bool,
        joins: Option<i64>,
        by: Option<UserId>,
    },
}

/// A server's compiled rules and settings, as every send reads them.
#[derive(Debug)]
pub struct ServerSafety {
    pub settings: SafetySettings,
    pub rules: RuleSet,
}

/// Per-node caches of what sends need, and the queue of events for live sessions.
pub(crate) struct SafetyState {
    servers: RwLock<HashMap<ServerId, Arc<ServerSafety>>>,
    /// Bumped by every invalidation: a load that started before one is not cached.
    generation: AtomicU64,
    /// Channel → server (None: a DM). Never changes for a channel, so never invalidated.
    channel_servers: RwLock<HashMap<ChannelId, Option<ServerId>>>,
    events: tokio::sync::mpsc::Sender<SafetyEvent>,
    receiver: parking_lot_free::Slot<tokio::sync::mpsc::Receiver<SafetyEvent>>,
}

/// A take-once slot without another dependency.
mod parking_lot_free {
    pub struct Slot<T>(std::sync::Mutex<Option<T>>);
    impl<T> Slot<T> {
        pub fn new(t: T) -> Self {
            Self(std::sync::Mutex::new(Some(t)))
        }
        pub fn take(&self) -> Option<T> {
            self.0.lock().ok()?.take()
        }
    }
}

/// Most channels remembered per node before the map starts over.
const MAX_CHANNELS_CACHED: usize = 200_000;

impl SafetyState {
    pub(crate) fn new() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        Self {
            servers: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            channel_servers: RwLock::new(HashMap::new()),
            events: tx,
            receiver: parking_lot_free::Slot::new(rx),
        }
    }
}

impl Chat {
    /// The safety events (once; the signaling layer delivers them). Unclaimed, they are
    /// dropped when the queue is full.
    pub fn take_safety_events(&self) -> Option<tokio::sync::mpsc::Receiver<SafetyEvent>> {
        self.safety.receiver.take()
    }

    pub(crate) fn safety_event(&self, e: SafetyEvent) {
        if self.safety.events.try_send(e).is_err() {
            tracing::warn!("safety event queue full or closed; event dropped");
        }
    }

    /// Forgets a server's cached rules and settings (after any change, on every node).
    pub fn invalidate_safety(&self, server_id: ServerId) {
        self.safety.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.safety.servers.write() {
            m.remove(&server_id);
        }
    }

    /// The server a channel belongs to (None for a DM or an unknown channel).
    pub(crate) async fn channel_server(
        &self,
        channel_id: ChannelId,
    ) -> ChatResult<Option<ServerId>> {
        if let Some(s) = self
            .safety
            .channel_servers
            .read()
            .ok()
            .and_then(|m| m.get(&channel_id).copied())
        {
            return Ok(s);
        }
        let row: Option<Option<ServerId>> =
            sqlx::query_scalar("SELECT server_id FROM channels WHERE id = $1")
                .bind(channel_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(server) = row else {
            return Ok(None);
        };
        if let Ok(mut m) = self.safety.channel_servers.write() {
            if m.len() >= MAX_CHANNELS_CACHED {
                m.clear();
            }
            m.insert(channel_id, server);
        }
        Ok(server)
    }

    /// A server's settings and compiled rules, from the cache or loaded and compiled once.
    pub async fn server_safety(&self, server_id: ServerId) -> ChatResult<Arc<ServerSafety>> {
        if let Some(s) = self
            .safety
            .servers
            .read()
            .ok()
            .and_then(|m| m.get(&server_id).cloned())
        {
            return Ok(s);
        }
        let generation = self.safety.generation.load(Ordering::SeqCst);
        let settings = self.load_settings(&self.pool, server_id).await?;
        let rules = self.load_rules(server_id).await?;
        let loaded = Arc::new(ServerSafety {
            settings,
            rules: RuleSet::compile(rules),
        });
        if let Ok(mut m) = self.safety.servers.write() {
            // Changed while loading: serve this answer once, cache the next one.
            if self.safety.generation.load(Ordering::SeqCst) == generation {
                m.insert(server_id, loaded.clone());
            }
        }
        Ok(loaded)
    }

    async fn load_settings<'e, E: sqlx::PgExecutor<'e>>(
        &self,
        db: E,
        server_id: ServerId,
    ) -> ChatResult<SafetySettings> {
        let row: Option<SafetySettings> = sqlx::query_as(
            "SELECT server_id, verification_level, raid_join_threshold, raid_join_window_secs,
                    raid_restrict_minutes, raid_min_account_age_secs, raid_mode, raid_mode_since,
                    alert_channel_id
             FROM server_safety WHERE server_id = $1",
        )
        .bind(server_id)
        .fetch_optional(db)
        .await?;
        Ok(row.unwrap_or_else(|| SafetySettings::defaults(server_id)))
    }

    /// The settings (MANAGE_SERVER or MODERATE_MEMBERS).
    pub async fn safety_settings(
        &self,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<SafetySettings> {
        let perms = self.server_permissions(server_id, user_id).await?;
        if !permissions::has(perms, permissions::MANAGE_SERVER)
            && !permissions::has(perms, permissions::MODERATE_MEMBERS)
        {
            return Err(ChatError::Forbidden("you may not view safety settings"));
        }
        self.load_settings(&self.pool, server_id).await
    }

    /// Changes the settings: raid mode with MANAGE_SERVER or MODERATE_MEMBERS, everything
    /// else with MANAGE_SERVER. Audit-logged (`safety_update`, `raid_mode_enable`/`_disable`).
    pub async fn update_safety(
        &self,
        server_id: ServerId,
        actor: crate::audit::Actor<'_>,
        patch: SafetyPatch,
    ) -> ChatResult<SafetySettings> {
        let perms = self.server_permissions(server_id, actor.user_id).await?;
        let only_raid = patch.verification_level.is_none()
            && patch.raid_join_threshold.is_none()
            && patch.raid_join_window_secs.is_none()
            && patch.raid_restrict_minutes.is_none()
            && patch.raid_min_account_age_secs.is_none()
            && patch.alert_channel_id.is_none();
        let may_raid = permissions::has(perms, permissions::MANAGE_SERVER)
            || permissions::has(perms, permissions::MODERATE_MEMBERS);
        if !(permissions::has(perms, permissions::MANAGE_SERVER) || (only_raid && may_raid)) {
            return Err(ChatError::Forbidden("you may not change safety settings"));
        }
        if let Some(l) = patch.verification_level {
            if l == 1 {
                return Err(ChatError::field(
                    "verification_level",
                    "1 (verified email) is not available: Confab does not verify email addresses",
                ));
            }
            if !matches!(l, 0 | 2 | 3 | 4) {
                return Err(ChatError::field(
                    "verification_level",
                    "must be 0, 2, 3 or 4",
                ));
            }
        }
        let ranges = [
            ("raid_join_threshold", patch.raid_join_threshold, 0, 10_000),
            (
                "raid_join_window_secs",
                patch.raid_join_window_secs,
                1,
                3600,
            ),
            (
                "raid_restrict_minutes",
                patch.raid_restrict_minutes,
                0,
                1440,
            ),
            (
                "raid_min_account_age_secs",
                patch.raid_min_account_age_secs,
                0,
                2_592_000,
            ),
        ];
        for (field, v, lo, hi) in ranges {
            if let Some(v) = v {
                if !(lo..=hi).contains(&v) {
                    return Err(ChatError::field(field, format!("must be {lo}-{hi}")));
                }
            }
        }
        if let Some(Some(ch)) = patch.alert_channel_id {
            self.check_alert_channel(server_id, ch).await?;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO server_safety (server_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let before = self.load_settings(&mut *tx, server_id).await?;
        let set_alert = patch.alert_channel_id.is_some();
        let after: SafetySettings = sqlx::query_as(
            "UPDATE server_safety SET
                 verification_level = coalesce($2, verification_level),
                 raid_join_threshold = coalesce($3, raid_join_threshold),
                 raid_join_window_secs = coalesce($4, raid_join_window_secs),
                 raid_restrict_minutes = coalesce($5, raid_restrict_minutes),
                 raid_min_account_age_secs = coalesce($6, raid_min_account_age_secs),
                 raid_mode = coalesce($7, raid_mode),
                 raid_mode_since = CASE WHEN $7 IS NULL THEN raid_mode_since
                                        WHEN $7 AND NOT raid_mode THEN now()
                                        WHEN $7 THEN raid_mode_since ELSE NULL END,
                 alert_channel_id = CASE WHEN $8 THEN $9 ELSE alert_channel_id END
             WHERE server_id = $1
             RETURNING server_id, verification_level, raid_join_threshold, raid_join_window_secs,
                       raid_restrict_minutes, raid_min_account_age_secs, raid_mode,
                       raid_mode_since, alert_channel_id",
        )
        .bind(server_id)
        .bind(patch.verification_level)
        .bind(patch.raid_join_threshold)
        .bind(patch.raid_join_window_secs)
        .bind(patch.raid_restrict_minutes)
        .bind(patch.raid_min_account_age_secs)
        .bind(patch.raid_mode)
        .bind(set_alert)
        .bind(patch.alert_channel_id.flatten())
        .fetch_one(&mut *tx)
        .await?;
        if before.raid_mode != after.raid_mode {
            let action = if after.raid_mode {
                "raid_mode_enable"
            } else {
                "raid_mode_disable"
            };
            self.audit(&mut tx, server_id, actor, action, None, json!({}))
                .await?;
        }
        if !only_raid {
            let b = serde_json::to_value(&before).unwrap_or_default();
            let a = serde_json::to_value(&after).unwrap_or_default();
            let mut changes = serde_json::Map::new();
            for (k, v) in a.as_object().into_iter().flatten() {
                if k != "raid_mode" && k != "raid_mode_since" && b.get(k) != Some(v) {
                    changes.insert(k.clone(), json!({"old": b.get(k), "new": v}));
                }
            }
            self.audit(
                &mut tx,
                server_id,
                actor,
                "safety_update",
                None,
                serde_json::Value::Object(changes),
            )
            .await?;
        }
        tx.commit().await?;
        self.invalidate_safety(server_id);
        if before.raid_mode != after.raid_mode {
            self.safety_event(SafetyEvent::RaidMode {
                server_id,
                on: after.raid_mode,
                joins: None,
                by: Some(actor.user_id),
            });
        }
        Ok(after)
    }

    /// An alert channel must be a text channel of the server.
    pub(crate) async fn check_alert_channel(
        &self,
        server_id: ServerId,
        channel_id: ChannelId,
    ) -> ChatResult<()> {
        let ok: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM channels WHERE id = $1 AND server_id = $2 AND kind = 'text'",
        )
        .bind(channel_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?;
        if ok.is_none() {
            return Err(ChatError::field(
                "alert_channel_id",
                "must be a text channel of this server",
            ));
        }
        Ok(())
    }

    /// Posts an alert message into `channel_id` in the given transaction. Its author is the
    /// member the alert is about; it mentions nobody (the text names them without pinging).
    pub(crate) async fn post_alert(
        &self,
        tx: &mut sqlx::PgConnection,
        channel_id: ChannelId,
        about: UserId,
        content: &str,
    ) -> ChatResult<crate::MessageId> {
        let content: String = content.chars().take(crate::messages::MAX_CONTENT).collect();
        let id: crate::MessageId = self.next_id();
        sqlx::query(
            "INSERT INTO messages (id, channel_id, author_id, content, flags) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(channel_id)
        .bind(about)
        .bind(content)
        .bind(ALERT_FLAG)
        .execute(&mut *tx)
        .await?;
        Ok(id)
    }

    /// Whether a member may post under the server's verification level and raid
    /// restrictions. Owners, administrators and members with any role are exempt (as on
    /// Discord, where roles bypass the verification level).
    pub(crate) async fn check_posting_gates(
        &self,
        server_id: ServerId,
        user_id: UserId,
        settings: &SafetySettings,
    ) -> ChatResult<()> {
        type GateRow = (
            bool,
            Option<DateTime<Utc>>,
            DateTime<Utc>,
            DateTime<Utc>,
            bool,
            bool,
        );
        let row: Option<GateRow> = sqlx::query_as(
            "SELECT m.pending, m.restricted_until, m.joined_at, u.created_at,
                    s.owner_id = m.user_id,
                    EXISTS (SELECT 1 FROM member_roles mr
                            WHERE mr.server_id = m.server_id AND mr.user_id = m.user_id)
             FROM members m JOIN users u ON u.id = m.user_id JOIN servers s ON s.id = m.server_id
             WHERE m.server_id = $1 AND m.user_id = $2",
        )
        .bind(server_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((pending, restricted_until, joined_at, created_at, owner, has_role)) = row else {
            return Ok(());
        };
        if owner || has_role {
            return Ok(());
        }
        let now = Utc::now();
        if pending {
            return Err(ChatError::Safety {
                code: CODE_VERIFY_FIRST,
                message: "confirm that you are human before posting in this server".into(),
            });
        }
        if let Some(until) = restricted_until.filter(|u| *u > now) {
            return Err(ChatError::Safety {
                code: CODE_RAID_RESTRICTED,
                message: format!(
                    "this server is in raid mode: new members may post from {}",
                    until.format("%H:%M:%S UTC")
                ),
            });
        }
        let level = settings.verification_level;
        if level >= 2 && created_at + Duration::minutes(5) > now {
            return Err(ChatError::Safety {
                code: CODE_VERIFICATION_LEVEL,
                message: "this server requires accounts older than 5 minutes to post".into(),
            });
        }
        if level >= 3 && joined_at + Duration::minutes(10) > now {
            return Err(ChatError::Safety {
                code: CODE_VERIFICATION_LEVEL,
                message: "this server requires members to have joined 10 minutes ago to post"
                    .into(),
            });
        }
        Ok(())
    }

    /// Clears the "I am human" step for the caller in a server.
    pub async fn verify_member(&self, server_id: ServerId, user_id: UserId) -> ChatResult<()> {
        let n =
            sqlx::query("UPDATE members SET pending = false WHERE server_id = $1 AND user_id = $2")
                .bind(server_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if n == 0 {
            return Err(ChatError::NotFound("server"));
        }
        Ok(())
    }

    /// What a join in the current state of the server means for the newcomer, checked in the
    /// join's transaction: `(pending, restricted_until)`, or a refusal.
    pub(crate) async fn join_gates(
        &self,
        tx: &mut sqlx::PgConnection,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<(bool, Option<DateTime<Utc>>)> {
        let s = self.load_settings(&mut *tx, server_id).await?;
        let pending = s.raid_mode || s.verification_level >= 4;
        if !s.raid_mode {
            return Ok((pending, None));
        }
        if s.raid_min_account_age_secs > 0 {
            let created: DateTime<Utc> =
                sqlx::query_scalar("SELECT created_at FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if created + Duration::seconds(s.raid_min_account_age_secs as i64) > Utc::now() {
                return Err(ChatError::Safety {
                    code: CODE_RAID_JOIN_REFUSED,
                    message: "this server is in raid mode and does not accept new accounts now"
                        .into(),
                });
            }
        }
        let until = (s.raid_restrict_minutes > 0)
            .then(|| Utc::now() + Duration::minutes(s.raid_restrict_minutes as i64));
        Ok((pending, until))
    }

    /// After a join: counts the server's recent joins and turns raid mode on when they reach
    /// the threshold. The flip is one conditional UPDATE, so of many concurrent joins (on any
    /// node) exactly one turns it on, audits it and posts the alert.
    pub async fn check_join_rate(&self, server_id: ServerId, joiner: UserId) -> ChatResult<bool> {
        let s = self.server_safety(server_id).await?;
        let s = &s.settings;
        if s.raid_mode || s.raid_join_threshold == 0 {
            return Ok(false);
        }
        let joins: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM members m JOIN servers s ON s.id = m.server_id
             WHERE m.server_id = $1 AND m.user_id <> s.owner_id
               AND m.joined_at > now() - make_interval(secs => $2)",
        )
        .bind(server_id)
        .bind(s.raid_join_window_secs as f64)
        .fetch_one(&self.pool)
        .await?;
        if joins < s.raid_join_threshold as i64 {
            return Ok(false);
        }
        let mut tx = self.pool.begin().await?;
        let flipped: Option<Option<ChannelId>> = sqlx::query_scalar(
            "INSERT INTO server_safety (server_id, raid_mode, raid_mode_since) VALUES ($1, true, now())
             ON CONFLICT (server_id) DO UPDATE SET raid_mode = true, raid_mode_since = now()
                 WHERE NOT server_safety.raid_mode
             RETURNING alert_channel_id",
        )
        .bind(server_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(alert_channel) = flipped else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO audit_log (id, server_id, actor_id, action, target_id, changes)
             VALUES ($1, $2, NULL, 'raid_mode_enable', NULL, $3)",
        )
        .bind(self.next_id::<Snowflake>())
        .bind(server_id)
        .bind(json!({"joins": joins, "window_secs": s.raid_join_window_secs}))
        .execute(&mut *tx)
        .await?;
        let alert = match alert_channel {
            Some(ch) => Some(
                self.post_alert(
                    &mut tx,
                    ch,
                    joiner,
                    &format!(
                        "Raid protection: {joins} joins in {} s — raid mode is on. Newcomers must confirm they are human and may not post for {} minutes.",
                        s.raid_join_window_secs, s.raid_restrict_minutes
                    ),
                )
                .await?,
            ),
            None => None,
        };
        tx.commit().await?;
        self.invalidate_safety(server_id);
        if let Some(id) = alert {
            let m = self.message_by_id(id).await?;
            self.safety_event(SafetyEvent::AlertPosted(Box::new(m)));
        }
        self.safety_event(SafetyEvent::RaidMode {
            server_id,
            on: true,
            joins: Some(joins),
            by: None,
        });
        tracing::warn!(server = %server_id, joins, "raid mode turned on by the join rate");
        Ok(true)
    }

    /// Members who should hear about safety matters (raid mode, reports): the owner and
    /// those whose server permissions include any of `wanted` (administrators included).
    pub async fn members_with(
        &self,
        server_id: ServerId,
        wanted: permissions::Permissions,
    ) -> ChatResult<Vec<UserId>> {
        let rows: Vec<(UserId, bool, permissions::Permissions)> = sqlx::query_as(
            "SELECT m.user_id, s.owner_id = m.user_id,
                    coalesce(ev.permissions, 0) | coalesce(bit_or(r.permissions), 0)
             FROM members m JOIN servers s ON s.id = m.server_id
             LEFT JOIN roles ev ON ev.id = s.id
             LEFT JOIN member_roles mr ON mr.server_id = m.server_id AND mr.user_id = m.user_id
             LEFT JOIN roles r ON r.id = mr.role_id
             WHERE m.server_id = $1
             GROUP BY m.user_id, s.owner_id, ev.permissions",
        )
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, owner, p)| {
                *owner || p.contains(permissions::ADMINISTRATOR) || p.intersects(wanted)
            })
            .map(|(u, _, _)| u)
            .collect())
    }
}
