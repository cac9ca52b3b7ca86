//! Safety endpoints (`confab_chat::safety`): automod rules, raid protection and verification
//! settings, the "I am human" step, and reports with the moderator queue. See docs/safety.md.

use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiResult, ErrorBody, Json, Path, Query};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use confab_chat::audit::Actor;
use confab_chat::permissions;
use confab_chat::safety::automod::Rule;
use confab_chat::safety::reports::{NewReport, Report, ResolveBody};
use confab_chat::safety::rules::RuleBody;
use confab_chat::safety::{SafetyEvent, SafetyPatch, SafetySettings};
use confab_chat::{ServerId, Snowflake, UserId};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

/// The server's automod rules (MANAGE_SERVER).
#[utoipa::path(get, path = "/servers/{server_id}/automod/rules", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = [Rule]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_rules(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Rule>>> {
    Ok(Json(
        state.chat.automod_rules(server_id, user.user_id).await?,
    ))
}

/// Create an automod rule (MANAGE_SERVER): `name`, `kind` and what the kind needs
/// (`keywords`, `patterns`, `mention_limit`, `allowed_domains`), with its actions.
#[utoipa::path(post, path = "/servers/{server_id}/automod/rules", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path)), request_body = RuleBody,
    responses((status = 201, body = Rule), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_rule(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    headers: HeaderMap,
    Json(body): Json<RuleBody>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    let r = super::moderation::reason(&headers);
    let rule = state
        .chat
        .create_automod_rule(server_id, Actor::new(user.user_id, r.as_deref()), body)
        .await?;
    state.publish(BusEvent::SafetyChanged { server_id }).await;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Change an automod rule (MANAGE_SERVER); absent fields stay.
#[utoipa::path(patch, path = "/servers/{server_id}/automod/rules/{rule_id}", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path), ("rule_id" = String, Path)), request_body = RuleBody,
    responses((status = 200, body = Rule), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_rule(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, rule_id)): Path<(ServerId, Snowflake)>,
    headers: HeaderMap,
    Json(body): Json<RuleBody>,
) -> ApiResult<Json<Rule>> {
    let r = super::moderation::reason(&headers);
    let rule = state
        .chat
        .update_automod_rule(
            server_id,
            rule_id,
            Actor::new(user.user_id, r.as_deref()),
            body,
        )
        .await?;
    state.publish(BusEvent::SafetyChanged { server_id }).await;
    Ok(Json(rule))
}

/// Delete an automod rule (MANAGE_SERVER).
#[utoipa::path(delete, path = "/servers/{server_id}/automod/rules/{rule_id}", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path), ("rule_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, rule_id)): Path<(ServerId, Snowflake)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let r = super::moderation::reason(&headers);
    state
        .chat
        .delete_automod_rule(server_id, rule_id, Actor::new(user.user_id, r.as_deref()))
        .await?;
    state.publish(BusEvent::SafetyChanged { server_id }).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Raid protection and verification settings (MANAGE_SERVER or MODERATE_MEMBERS).
#[utoipa::path(get, path = "/servers/{server_id}/safety", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = SafetySettings), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_settings(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<SafetySettings>> {
    Ok(Json(
        state.chat.safety_settings(server_id, user.user_id).await?,
    ))
}

/// Change the settings (MANAGE_SERVER), or only turn raid mode on or off (MANAGE_SERVER or
/// MODERATE_MEMBERS). Moderators get RAID_MODE_UPDATE when raid mode changes.
#[utoipa::path(patch, path = "/servers/{server_id}/safety", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path)), request_body = SafetyPatch,
    responses((status = 200, body = SafetySettings), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_settings(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    headers: HeaderMap,
    Json(body): Json<SafetyPatch>,
) -> ApiResult<Json<SafetySettings>> {
    let r = super::moderation::reason(&headers);
    let settings = state
        .chat
        .update_safety(server_id, Actor::new(user.user_id, r.as_deref()), body)
        .await?;
    state.publish(BusEvent::SafetyChanged { server_id }).await;
    Ok(Json(settings))
}

/// "I am human": the click-through a newcomer makes before posting in raid mode or under
/// the highest verification level.
#[utoipa::path(post, path = "/servers/{server_id}/members/@me/verify", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<StatusCode> {
    state.chat.verify_member(server_id, user.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who sees the report queue.
const QUEUE: permissions::Permissions =
    permissions::Permissions::MODERATE_MEMBERS.union(permissions::Permissions::MANAGE_MESSAGES);

async fn to_moderators(state: &AppState, server_id: ServerId, t: Event, d: &serde_json::Value) {
    match state.chat.members_with(server_id, QUEUE).await {
        Ok(ids) if !ids.is_empty() => state.emit(Target::Users(ids), t, d),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = ?e, "listing moderators"),
    }
}

/// Report a message (`message_id` + `channel_id`) or a member (`user_id`) with a reason.
/// The report goes to the moderators (REPORT_CREATE); the reporter sees only their own.
#[utoipa::path(post, path = "/servers/{server_id}/reports", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path)), request_body = NewReport,
    responses((status = 201, body = Report), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Json(body): Json<NewReport>,
) -> ApiResult<(StatusCode, Json<Report>)> {
    let report = state
        .chat
        .create_report(server_id, user.user_id, body)
        .await?;
    let d = serde_json::to_value(&report).unwrap_or_default();
    to_moderators(&state, server_id, Event::ReportCreate, &d).await;
    Ok((StatusCode::CREATED, Json(report)))
}

#[derive(Deserialize, IntoParams)]
pub struct ReportParams {
    /// `open` (default), `resolved`, `dismissed` or `all`.
    pub status: Option<String>,
    /// Reports older than this id.
    pub before: Option<Snowflake>,
    /// 1-100, default 50.
    pub limit: Option<i64>,
}

/// The moderator queue, newest first (MODERATE_MEMBERS or MANAGE_MESSAGES).
#[utoipa::path(get, path = "/servers/{server_id}/reports", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path), ReportParams),
    responses((status = 200, body = [Report]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_reports(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Query(q): Query<ReportParams>,
) -> ApiResult<Json<Vec<Report>>> {
    Ok(Json(
        state
            .chat
            .reports(
                server_id,
                user.user_id,
                q.status.as_deref(),
                q.before,
                q.limit,
            )
            .await?,
    ))
}

/// Act on an open report: `delete_message`, `timeout` (`timeout_seconds`), `ban`
/// (`delete_message_seconds`) or `dismiss`. Each action needs its own permission too.
#[utoipa::path(post, path = "/servers/{server_id}/reports/{report_id}/resolve", tag = "safety", security(("bearer" = [])),
    params(("server_id" = String, Path), ("report_id" = String, Path)), request_body = ResolveBody,
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resolve_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, report_id)): Path<(ServerId, Snowflake)>,
    headers: HeaderMap,
    Json(body): Json<ResolveBody>,
) -> ApiResult<Json<Report>> {
    let r = super::moderation::reason(&headers);
    let done = state
        .chat
        .resolve_report(
            server_id,
            report_id,
            Actor::new(user.user_id, r.as_deref()),
            body,
        )
        .await?;
    let target = done.report.target_user_id;
    if let Some(m) = &done.deleted {
        state.emit(
            state.channel_target(m.server_id, m.channel_id, None).await,
            Event::MessageDelete,
            &json!({"id": m.id, "channel_id": m.channel_id, "server_id": m.server_id}),
        );
    }
    match done.report.resolution.as_deref() {
        Some("timeout") => member_changed(&state, server_id, target).await,
        Some("ban") => {
            if done.was_member {
                super::moderation::removed(&state, server_id, target).await;
            }
            state.emit(
                Target::Server(server_id),
                Event::BanAdd,
                &json!({"server_id": server_id, "user_id": target}),
            );
        }
        _ => {}
    }
    let d = serde_json::to_value(&done.report).unwrap_or_default();
    to_moderators(&state, server_id, Event::ReportUpdate, &d).await;
    Ok(Json(done.report))
}

/// A member's timeout changed: permissions follow everywhere, members see MEMBER_UPDATE.
async fn member_changed(state: &AppState, server_id: ServerId, user_id: UserId) {
    state
        .publish(BusEvent::PermissionsChanged { server_id })
        .await;
    match state.chat.member(server_id, user_id).await {
        Ok(member) => state.emit(Target::Server(server_id), Event::MemberUpdate, &member),
        Err(e) => tracing::warn!(error = ?e, "reading a timed-out member"),
    }
}

/// Delivers what safety actions inside the chat services (automod alerts and timeouts, raid
/// mode turned on by the join rate) mean for live sessions, and tells other nodes to drop
/// their cached safety state where it changed.
pub async fn deliver_events(state: AppState, mut events: tokio::sync::mpsc::Receiver<SafetyEvent>) {
    while let Some(e) = events.recv().await {
        match e {
            SafetyEvent::AlertPosted(m) => {
                state.emit(
                    state.channel_target(m.server_id, m.channel_id, None).await,
                    Event::MessageCreate,
                    &*m,
                );
            }
            SafetyEvent::TimedOut { server_id, user_id } => {
                member_changed(&state, server_id, user_id).await;
            }
            SafetyEvent::RaidMode {
                server_id,
                on,
                joins,
                by,
            } => {
                state.publish(BusEvent::SafetyChanged { server_id }).await;
                let since = state
                    .chat
                    .server_safety(server_id)
                    .await
                    .ok()
                    .and_then(|s| s.settings.raid_mode_since);
                let d = json!({"server_id": server_id, "raid_mode": on, "since": since, "joins": joins, "by": by});
                let wanted = permissions::MANAGE_SERVER | permissions::MODERATE_MEMBERS;
                match state.chat.members_with(server_id, wanted).await {
                    Ok(ids) if !ids.is_empty() => {
                        state.emit(Target::Users(ids), Event::RaidModeUpdate, &d)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = ?e, "listing moderators"),
                }
            }
        }
    }
}
