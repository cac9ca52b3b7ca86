-- Stage channels: a voice channel kind where only speakers send audio and everyone else
-- listens. Who is on stage is live voice state (like mute), not stored; only the kind is.
ALTER TABLE channels DROP CONSTRAINT channels_kind_check;
ALTER TABLE channels ADD CONSTRAINT channels_kind_check
    CHECK (kind IN ('text', 'voice', 'stage', 'category', 'dm', 'group_dm'));
