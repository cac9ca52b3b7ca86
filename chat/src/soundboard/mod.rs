//! The soundboard: short sounds uploaded per server (MANAGE_SERVER) and played into a voice
//! channel by a member with USE_SOUNDBOARD and SPEAK there. This module keeps the sounds and
//! decides who may do what; the signaling crate checks that a player is connected to the
//! channel, rate-limits plays and tells the channel. The audio is mixed into the player's own
//! outgoing voice by its client (docs/soundboard.md says why).

pub mod audio;

use crate::audit::Actor;
use crate::permissions::{self, Permissions};
use crate::reactions::valid_emoji;
use crate::{ChannelId, Chat, ChatError, ChatResult, ServerId, Snowflake, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Sounds one server may hold.
pub const MAX_SOUNDS_PER_SERVER: i64 = 48;
/// Longest sound name, in characters.
pub const MAX_NAME: usize = 32;

/// A sound as clients see it (its audio is fetched separately).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct Sound {
    pub id: Snowflake,
    pub server_id: ServerId,
    pub name: String,
    /// A unicode emoji shown with the name.
    pub emoji: Option<String>,
    /// Playback gain chosen by the uploader, 0 to 1.
    pub volume: f32,
    pub uploader_id: Option<UserId>,
    /// `audio/ogg` (Opus), `audio/mpeg` or `audio/wav`, as sniffed from the bytes.
    pub content_type: String,
    pub duration_ms: i32,
    pub size: i32,
    pub created_at: DateTime<Utc>,
}

/// What an upload says about itself besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct NewSound<'a> {
    pub name: &'a str,
    pub emoji: Option<&'a str>,
    pub volume: Option<f32>,
}

/// A sound's audio, for download.
#[derive(Debug, Clone)]
pub struct SoundAudio {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A play the caller may make: the sound, in the channel's server.
#[derive(Debug, Clone)]
pub struct Play {
    pub server_id: ServerId,
    pub sound: Sound,
}

const COLUMNS: &str = "id, server_id, name, emoji, volume, uploader_id, content_type, duration_ms,
                       octet_length(audio) AS size, created_at";

impl Chat {
    /// The server's sounds, oldest first (any member).
    pub async fn sounds(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Sound>> {
        self.require(server_id, user_id, Permissions::empty(), "")
            .await?;
        Ok(sqlx::query_as(q!(
            "SELECT {COLUMNS} FROM soundboard_sounds WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Adds a sound (MANAGE_SERVER): its bytes must be Ogg/Opus, MP3 or WAV of at most
    /// `audio::MAX_BYTES` bytes and `audio::MAX_DURATION_MS`; at most `MAX_SOUNDS_PER_SERVER`
    /// per server. Recorded in the audit log (`soundboard_sound_create`).
    pub async fn create_sound(
        &self,
        server_id: ServerId,
        user_id: UserId,
        new: NewSound<'_>,
        bytes: &[u8],
    ) -> ChatResult<Sound> {
        self.require(
            server_id,
            user_id,
            permissions::MANAGE_SERVER,
            "you need MANAGE_SERVER to manage the soundboard",
        )
        .await?;
        let name = new.name.trim();
        let mut v = crate::error::Validator::default();
        v.check(
            !name.is_empty()
                && name.chars().count() <= MAX_NAME
                && !name.chars().any(char::is_control),
            "name",
            "must be 1-32 characters",
        );
        v.check(
            new.emoji.is_none_or(valid_emoji),
            "emoji",
            "must be a unicode emoji",
        );
        v.check(
            new.volume.is_none_or(|x| (0.0..=1.0).contains(&x)),
            "volume",
            "must be between 0 and 1",
        );
        v.finish()?;
        let info = audio::inspect(bytes).map_err(|e| ChatError::field("audio", e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        // Serialises uploads to one server so two at once cannot both take the last place.
        sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR UPDATE")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM soundboard_sounds WHERE server_id = $1")
                .bind(server_id)
                .fetch_one(&mut *tx)
                .await?;
        if count >= MAX_SOUNDS_PER_SERVER {
            return Err(ChatError::Conflict(format!(
                "a server has at most {MAX_SOUNDS_PER_SERVER} sounds"
            )));
        }
        let sound: Sound = sqlx::query_as(q!("INSERT INTO soundboard_sounds
                 (id, server_id, name, emoji, volume, uploader_id, content_type, duration_ms, audio)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"))
        .bind(self.next_id::<Snowflake>())
        .bind(server_id)
        .bind(name)
        .bind(new.emoji)
        .bind(new.volume.unwrap_or(1.0))
        .bind(user_id)
        .bind(info.kind.content_type())
        .bind(info.duration_ms as i32)
        .bind(bytes)
        .fetch_one(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            server_id,
            Actor::new(user_id, None),
            "soundboard_sound_create",
            Some(sound.id),
            serde_json::json!({"name": sound.name, "emoji": sound.emoji, "duration_ms": sound.duration_ms}),
        )
        .await?;
        tx.commit().await?;
        Ok(sound)
    }

    /// Deletes a sound (MANAGE_SERVER); recorded as `soundboard_sound_delete`.
    pub async fn delete_sound(
        &self,
        server_id: ServerId,
        sound_id: Snowflake,
        actor: Actor<'_>,
    ) -> ChatResult<()> {
        self.require(
            server_id,
            actor.user_id,
            permissions::MANAGE_SERVER,
            "you need MANAGE_SERVER to manage the soundboard",
        )
        .await?;
        let mut tx = self.pool.begin().await?;
        let name: Option<String> = sqlx::query_scalar(
            "DELETE FROM soundboard_sounds WHERE id = $1 AND server_id = $2 RETURNING name",
        )
        .bind(sound_id)
        .bind(server_id)
        .fetch_optional(&mut *tx)
        .await?;
        let name = name.ok_or(ChatError::NotFound("sound"))?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "soundboard_sound_delete",
            Some(sound_id),
            serde_json::json!({"name": name}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A sound's audio (any member of its server).
    pub async fn sound_audio(
        &self,
        server_id: ServerId,
        sound_id: Snowflake,
        user_id: UserId,
    ) -> ChatResult<SoundAudio> {
        self.require(server_id, user_id, Permissions::empty(), "")
            .await?;
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT content_type, audio FROM soundboard_sounds WHERE id = $1 AND server_id = $2",
        )
        .bind(sound_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?;
        let (content_type, bytes) = row.ok_or(ChatError::NotFound("sound"))?;
        Ok(SoundAudio {
            content_type,
            bytes,
        })
    }

    /// Checks that `user_id` may play `sound_id` into voice channel `channel_id`: the channel
    /// is a voice or stage channel they can see, they hold USE_SOUNDBOARD and SPEAK there, and
    /// the sound belongs to the channel's server. Being connected is the caller's to check.
    pub async fn check_sound_play(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
        sound_id: Snowflake,
    ) -> ChatResult<Play> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        let server_id = channel.server_id.ok_or(ChatError::NotFound("channel"))?;
        if !channel.kind.is_voice() {
            return Err(ChatError::field("channel_id", "is not a voice channel"));
        }
        if !permissions::has(perms, permissions::USE_SOUNDBOARD | permissions::SPEAK) {
            return Err(ChatError::Forbidden(
                "you need USE_SOUNDBOARD and SPEAK in this channel to play sounds",
            ));
        }
        let sound: Option<Sound> = sqlx::query_as(q!(
            "SELECT {COLUMNS} FROM soundboard_sounds WHERE id = $1 AND server_id = $2"
        ))
        .bind(sound_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?;
        let sound = sound.ok_or_else(|| ChatError::field("sound_id", "unknown sound"))?;
        Ok(Play { server_id, sound })
    }
}
