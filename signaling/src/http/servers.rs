//! `/servers`: servers, their channels, members and invites.

use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiResult, ErrorBody, Json, OptionalJson, Path, Query};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use crate::visibility::ServerVisibility;
use axum::extract::State;
use axum::http::StatusCode;
use confab_chat::channels::NewChannel;
use confab_chat::model::{Channel, ChannelKind, Invite, Member, Server, ServerSnapshot};
use confab_chat::{ChannelId, ChatError, Name, ServerId, UserId};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
pub struct ServerBody {
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct NewChannelBody {
    pub name: String,
    #[serde(rename = "type", default = "text_kind")]
    pub kind: ChannelKind,
    pub parent_id: Option<ChannelId>,
    pub topic: Option<String>,
    pub position: Option<i32>,
}

fn text_kind() -> ChannelKind {
    ChannelKind::Text
}

#[derive(Deserialize, ToSchema, Default)]
pub struct InviteBody {
    /// Uses before the invite stops working; 0 = unlimited (default).
    pub max_uses: Option<i32>,
    /// Seconds until it expires; 0 = never. Default 86400.
    pub max_age: Option<i32>,
    /// Temporary membership: who joins through it is removed when their last gateway session
    /// ends, unless they were given a role meanwhile. Default false.
    pub temporary: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct MemberVoiceBody {
    /// Server-mute: the SFU drops this member's audio.
    pub mute: Option<bool>,
    /// Server-deafen: the member receives no audio.
    pub deaf: Option<bool>,
    /// Time the member out until then (RFC 3339, at most 28 days ahead); null lifts it.
    #[serde(default, deserialize_with = "crate::http::users::nullable")]
    #[schema(value_type = Option<String>)]
    pub timeout_until: Option<Option<chrono::DateTime<chrono::Utc>>>,
    /// Move the member (who must be in voice) to this voice or stage channel, or disconnect
    /// them with null (MOVE_MEMBERS; see docs/permissions.md).
    #[serde(default, deserialize_with = "crate::http::users::nullable")]
    #[schema(value_type = Option<String>)]
    pub channel_id: Option<Option<ChannelId>>,
}

/// SERVER_CREATE's payload: the server with its channels, members, the members' presences and
/// voice states (what READY gives for servers known at IDENTIFY).
/// `visible`: the channels the recipient may view (None: all of them, for the owner of a new
/// server); voice states in other channels are left out.
fn server_create(
    state: &AppState,
    snap: &ServerSnapshot,
    visible: Option<&std::collections::HashSet<ChannelId>>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(snap).unwrap_or_default();
    let presences: Vec<serde_json::Value> = snap
        .members
        .iter()
        .filter_map(|m| {
            let st = state.hub.presence_of(m.user.id);
            (st != crate::gateway::presence::Status::Offline)
                .then(|| json!({"user_id": m.user.id, "status": st}))
        })
        .collect();
    v["presences"] = json!(presences);
    let mut voice_states = state.voice.states_for(&[snap.server.id]);
    if let Some(visible) = visible {
        crate::visibility::retain_visible_voice(&mut voice_states, visible);
    }
    v["voice_states"] = json!(voice_states);
    v
}

/// Servers I am a member of.
#[utoipa::path(get, path = "/servers", tag = "servers", security(("bearer" = [])), responses((status = 200, body = [Server])))]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Vec<Server>>> {
    Ok(Json(state.chat.servers_of(user.user_id).await?))
}

/// Create a server; it starts with a text channel, a voice channel and the @everyone role.
#[utoipa::path(post, path = "/servers", tag = "servers", security(("bearer" = [])), request_body = ServerBody,
    responses((status = 201, body = Server), (status = 400, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<ServerBody>,
) -> ApiResult<(StatusCode, Json<Server>)> {
    let name = Name::parse(&body.name)?;
    let snap = state.chat.create_server(user.user_id, &name).await?;
    state
        .publish(BusEvent::MemberJoined {
            server_id: snap.server.id,
            user_id: user.user_id,
        })
        .await;
    state.emit(
        Target::User(user.user_id),
        Event::ServerCreate,
        &server_create(&state, &snap, None),
    );
    Ok((StatusCode::CREATED, Json(snap.server)))
}

/// A server I am a member of.
#[utoipa::path(get, path = "/servers/{server_id}", tag = "servers", security(("bearer" = [])), params(("server_id" = String, Path)),
    responses((status = 200, body = Server), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Server>> {
    Ok(Json(state.chat.server(server_id, user.user_id).await?))
}

/// Rename a server (MANAGE_SERVER).
#[utoipa::path(patch, path = "/servers/{server_id}", tag = "servers", security(("bearer" = [])), params(("server_id" = String, Path)),
    request_body = ServerBody, responses((status = 200, body = Server), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Json(body): Json<ServerBody>,
) -> ApiResult<Json<Server>> {
    let name = Name::parse(&body.name)?;
    let server = state
        .chat
        .rename_server(server_id, user.user_id, &name)
        .await?;
    state.emit(Target::Server(server_id), Event::ServerUpdate, &server);
    Ok(Json(server))
}

/// Delete a server (owner only).
#[utoipa::path(delete, path = "/servers/{server_id}", tag = "servers", security(("bearer" = [])), params(("server_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<StatusCode> {
    state.chat.delete_server(server_id, user.user_id).await?;
    state.emit(
        Target::Server(server_id),
        Event::ServerDelete,
        &json!({"id": server_id}),
    );
    state.publish(BusEvent::ServerDeleted { server_id }).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The server's channels.
#[utoipa::path(get, path = "/servers/{server_id}/channels", tag = "channels", security(("bearer" = [])), params(("server_id" = String, Path)),
    responses((status = 200, body = [Channel]), (status = 404, body = ErrorBody)))]
pub async fn channels(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Channel>>> {
    Ok(Json(state.chat.channels(server_id, user.user_id).await?))
}

/// Create a text, voice or category channel (MANAGE_CHANNELS).
#[utoipa::path(post, path = "/servers/{server_id}/channels", tag = "channels", security(("bearer" = [])), params(("server_id" = String, Path)),
    request_body = NewChannelBody, responses((status = 201, body = Channel), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_channel(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Json(body): Json<NewChannelBody>,
) -> ApiResult<(StatusCode, Json<Channel>)> {
    let before = ServerVisibility::capture(&state, server_id).await;
    let channel = state
        .chat
        .create_channel(
            server_id,
            user.user_id,
            NewChannel {
                name: Name::parse(&body.name)?,
                kind: body.kind,
                parent_id: body.parent_id,
                topic: body.topic,
                position: body.position,
            },
        )
        .await?;
    // To the members who may see it: a channel in a private category inherits its overwrites.
    before
        .publish(&state, BusEvent::PermissionsChanged { server_id }, None)
        .await;
    Ok((StatusCode::CREATED, Json(channel)))
}

#[derive(Deserialize, IntoParams)]
pub struct MembersParams {
    /// Members whose user id is greater than this one (keyset pagination: pass the last id of
    /// the previous page).
    pub after: Option<UserId>,
    /// 1-1000, default 1000.
    pub limit: Option<i64>,
}

/// The server's members, by user id ascending, one page at a time: a page shorter than `limit`
/// is the last.
#[utoipa::path(get, path = "/servers/{server_id}/members", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path), MembersParams),
    responses((status = 200, body = [Member]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn members(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Query(q): Query<MembersParams>,
) -> ApiResult<Json<Vec<Member>>> {
    Ok(Json(
        state
            .chat
            .members(server_id, user.user_id, q.after, q.limit)
            .await?,
    ))
}

/// Leave a server.
/// A member's presence.
#[derive(serde::Serialize, ToSchema)]
pub struct PresenceEntry {
    pub user_id: UserId,
    /// `online`, `idle` or `dnd` (offline and invisible members are left out).
    pub status: crate::gateway::presence::Status,
}

/// Presences of the server's members who are not offline, for clients that load a large
/// server's member list over REST: READY carries only some of its members' presences.
#[utoipa::path(get, path = "/servers/{server_id}/presences", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path)),
    responses((status = 200, body = [PresenceEntry]), (status = 404, body = ErrorBody)))]
pub async fn presences(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<PresenceEntry>>> {
    state.chat.server(server_id, user.user_id).await?;
    let list = state
        .hub
        .users_in(server_id)
        .into_iter()
        .filter_map(|user_id| {
            let st = state.hub.presence_of(user_id);
            (st != crate::gateway::presence::Status::Offline).then_some(PresenceEntry {
                user_id,
                status: st,
            })
        })
        .collect();
    Ok(Json(list))
}

#[utoipa::path(delete, path = "/servers/{server_id}/members/@me", tag = "members", security(("bearer" = [])), params(("server_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn leave(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<StatusCode> {
    state.chat.leave_server(server_id, user.user_id).await?;
    state
        .publish(BusEvent::MemberLeft {
            server_id,
            user_id: user.user_id,
        })
        .await;
    state.emit(
        Target::Server(server_id),
        Event::MemberRemove,
        &json!({"server_id": server_id, "user_id": user.user_id}),
    );
    state.emit(
        Target::User(user.user_id),
        Event::ServerDelete,
        &json!({"id": server_id}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Server-mute or server-deafen a member in voice (MUTE_MEMBERS / DEAFEN_MEMBERS), time them
/// out (MODERATE_MEMBERS), or move them to another voice channel or out of voice
/// (`channel_id`, MOVE_MEMBERS).
#[utoipa::path(patch, path = "/servers/{server_id}/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("server_id" = String, Path), ("user_id" = String, Path)), request_body = MemberVoiceBody,
    responses((status = 200, body = Member), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, target)): Path<(ServerId, UserId)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<MemberVoiceBody>,
) -> ApiResult<Json<Member>> {
    let reason = super::moderation::reason(&headers);
    let actor = confab_chat::audit::Actor::new(user.user_id, reason.as_deref());
    if let Some(until) = body.timeout_until {
        state.chat.timeout(server_id, target, until, actor).await?;
        // Timed out: no CONNECT, SPEAK or VIDEO until it ends, so out of voice now.
        state
            .publish(BusEvent::PermissionsChanged { server_id })
            .await;
    }
    if let Some(to) = body.channel_id {
        // Recorded here; the node serving the member's voice session moves it.
        if state.voice.check_move(server_id, actor, target, to).await? {
            state
                .publish(BusEvent::VoiceMoved {
                    server_id,
                    user_id: target,
                    to,
                })
                .await;
        }
    }
    let member = if body.mute.is_some() || body.deaf.is_some() {
        state
            .chat
            .set_member_voice(server_id, user.user_id, target, body.mute, body.deaf)
            .await?
    } else {
        state
            .chat
            .server_permissions(server_id, user.user_id)
            .await?;
        state.chat.member(server_id, target).await?
    };
    state.emit(Target::Server(server_id), Event::MemberUpdate, &member);
    state
        .publish(BusEvent::VoiceModerated {
            server_id,
            user_id: target,
            mute: member.mute,
            deaf: member.deaf,
        })
        .await;
    Ok(Json(member))
}

/// Create an invite (CREATE_INVITE).
#[utoipa::path(post, path = "/servers/{server_id}/invites", tag = "invites", security(("bearer" = [])), params(("server_id" = String, Path)),
    request_body = Option<InviteBody>, responses((status = 201, body = Invite), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_invite(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    OptionalJson(body): OptionalJson<InviteBody>,
) -> ApiResult<(StatusCode, Json<Invite>)> {
    let invite = state
        .chat
        .create_invite(
            server_id,
            user.user_id,
            body.max_uses,
            body.max_age,
            body.temporary.unwrap_or(false),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

/// Look at an invite (with a preview of its server).
#[utoipa::path(get, path = "/invites/{code}", tag = "invites", security(("bearer" = [])), params(("code" = String, Path)),
    responses((status = 200, body = Invite), (status = 404, body = ErrorBody)))]
pub async fn get_invite(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(code): Path<String>,
) -> ApiResult<Json<Invite>> {
    Ok(Json(state.chat.invite(&code).await?))
}

/// Join the invite's server (no body).
#[utoipa::path(post, path = "/invites/{code}", tag = "invites", security(("bearer" = [])), params(("code" = String, Path)),
    responses((status = 200, body = ServerSnapshot), (status = 404, body = ErrorBody)))]
pub async fn accept_invite(
    State(state): State<AppState>,
    user: AuthUser,
    Path(code): Path<String>,
) -> ApiResult<Json<ServerSnapshot>> {
    let (mut snap, added) = state.chat.accept_invite(&code, user.user_id).await?;
    // The joiner sees which of the channels they may view have messages (unread markers).
    // Only the channels the joiner may view, as READY and GET /channels list them.
    let visible = state.chat.viewable_channels(user.user_id).await?;
    confab_chat::channels::retain_visible(&mut snap.channels, &visible);
    state
        .chat
        .fill_last_message_ids(&visible, &mut snap.channels)
        .await?;
    if added {
        let server_id = snap.server.id;
        let member = snap
            .members
            .iter()
            .find(|m| m.user.id == user.user_id)
            .cloned()
            .ok_or(ChatError::NotFound("member"))?;
        state.emit(Target::Server(server_id), Event::MemberAdd, &member);
        // Existing members learn the newcomer's presence; the newcomer gets everyone's in
        // SERVER_CREATE.
        let status = state.hub.presence_of(user.user_id);
        if status != crate::gateway::presence::Status::Offline {
            state.emit(
                Target::Server(server_id),
                Event::PresenceUpdate,
                &json!({"user_id": user.user_id, "status": status}),
            );
        }
        state
            .publish(BusEvent::MemberJoined {
                server_id,
                user_id: user.user_id,
            })
            .await;
        state.emit(
            Target::User(user.user_id),
            Event::ServerCreate,
            &server_create(&state, &snap, Some(&visible)),
        );
    }
    Ok(Json(snap))
}
