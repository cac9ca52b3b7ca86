//! Live voice sessions follow permission changes, and moderators move or disconnect members.
//!
//! A participant's SPEAK, VIDEO, CONNECT and PRIORITY_SPEAKER are read when it joins; after that
//! every change that can alter them (roles, member roles, overwrites, channel moves, timeouts)
//! calls `recheck_server`, which reads them again for each participant of the server and applies
//! the difference at once: no CONNECT or VIEW_CHANNEL any more → disconnected; no SPEAK → the
//! SFU drops its audio and its state shows `suppress`; no VIDEO → the SFU drops its video and
//! `self_video`/`self_stream` are cleared. Permissions given back are restored the same way.

use super::registry::VoicePerms;
use super::{sfu_participant, VoiceService};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use confab_chat::audit::Actor;
use confab_chat::{ChannelId, ChatError, ChatResult, ServerId, Snowflake, UserId};
use serde_json::json;

impl VoiceService {
    /// Reads the voice permissions of every participant of `server_id` again and applies them.
    pub async fn recheck_server(&self, server_id: ServerId) {
        self.refresh_server_audiences(server_id).await;
        let present = self.registry.lock().in_server(server_id);
        for (id, user_id, channel_id) in present {
            match self.chat.voice_access(channel_id, user_id).await {
                Ok(access) => self.apply_perms(id, VoicePerms::from_bits(access.permissions)),
                Err(e @ (ChatError::Internal(_) | ChatError::Unavailable)) => {
                    // Keep the session as it is rather than cut it on a database hiccup.
                    tracing::error!(error = ?e, "voice: re-reading permissions");
                }
                Err(_) => {
                    // Not a member, cannot see or may not connect: out of voice.
                    let gone = self.registry.lock().remove_id(id);
                    if let Some(p) = gone {
                        self.teardown(&p, "permission");
                    }
                }
            }
        }
    }

    /// Sets a participant's permissions; tells the SFU and everyone when something changed.
    fn apply_perms(&self, id: Snowflake, perms: VoicePerms) {
        let changed = {
            let mut reg = self.registry.lock();
            let Some(p) = reg.by_id_mut(id) else { return };
            if p.perms == perms {
                return;
            }
            let before = p.state();
            p.perms = perms;
            if !perms.video {
                p.self_video = false;
                p.self_stream = false;
            }
            let visible = p.state() != before;
            (p.clone(), visible)
        };
        let (p, visible) = changed;
        self.apply_flags(&p);
        if visible {
            self.tell_state(&p);
        }
    }

    /// A moderator moves `target` to voice channel `to`, or disconnects it (`to` None): checks
    /// that the member is in voice in this server (on any node) and records the move. True when
    /// there is something to do: the caller publishes `BusEvent::VoiceMoved`, and the node
    /// serving the member's voice session applies it (`apply_move`).
    pub async fn check_move(
        &self,
        server_id: ServerId,
        actor: Actor<'_>,
        target: UserId,
        to: Option<ChannelId>,
    ) -> ChatResult<bool> {
        let from = self
            .state_of(target)
            .filter(|s| s.server_id == server_id)
            .and_then(|s| s.channel_id);
        let Some(from) = from else {
            return Err(ChatError::field(
                "channel_id",
                "the member is not connected to voice in this server",
            ));
        };
        if to == Some(from) {
            return Ok(false);
        }
        self.chat
            .voice_move(server_id, actor, target, from, to)
            .await?;
        Ok(true)
    }

    /// Moves (or disconnects) `target` if its voice session is on this node. The moved client
    /// gets VOICE_CHANNEL_MOVE and offers again for the new channel.
    pub async fn apply_move(&self, server_id: ServerId, target: UserId, to: Option<ChannelId>) {
        let current = self
            .registry
            .lock()
            .by_user(target)
            .filter(|p| p.server_id == server_id)
            .map(|p| (p.id, p.channel_id));
        let Some((id, from)) = current else { return };
        if to == Some(from) {
            return;
        }
        let Some(to) = to else {
            let gone = self.registry.lock().remove_id(id);
            if let Some(p) = gone {
                self.teardown(&p, "disconnected");
            }
            return;
        };
        let access = match self.chat.voice_access(to, target).await {
            Ok(a) => a,
            Err(e) => {
                // Checked by the node that took the request; changed since.
                tracing::info!(error = %e, "voice move no longer allowed");
                return;
            }
        };
        self.refresh_audience(server_id, to).await;
        let new_id = self.chat.next_id();
        let moved = self.registry.lock().moved(
            id,
            new_id,
            to,
            access.stage,
            VoicePerms::from_bits(access.permissions),
        );
        // Gone meanwhile (left on its own): nothing to move.
        let Some((old, p)) = moved else { return };
        self.media.leave(sfu_participant(old.id));
        self.speaking_ended(&old);
        if !self.same_audience(old.channel_id, p.channel_id) {
            self.tell_left(&old);
        }
        self.record_end(old.id, "moved");
        metrics::counter!("confab_voice_joins_total").increment(1);
        let chat = self.chat.clone();
        let rec = p.clone();
        tokio::spawn(async move {
            if let Err(e) = chat
                .voice_session_started(rec.id, rec.user_id, rec.server_id, rec.channel_id)
                .await
            {
                tracing::warn!(error = %e, "recording voice session");
            }
        });
        self.tell_state(&p);
        self.dispatcher.emit(
            Target::Session(p.gateway_session.clone()),
            Event::VoiceChannelMove,
            &json!({
                "server_id": p.server_id,
                "channel_id": p.channel_id,
                "voice_session_id": p.id,
            }),
        );
    }
}
