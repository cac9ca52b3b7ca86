-- Who was connected to which voice channel, and when. One row per voice session (a join that
-- may survive network blips); `ended_at` is set when the participant leaves.
CREATE TABLE voice_sessions (
    id          BIGINT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    -- Kept when the channel is deleted: the history stays, the link goes.
    channel_id  BIGINT REFERENCES channels (id) ON DELETE SET NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at    TIMESTAMPTZ,
    end_reason  TEXT CHECK (end_reason IS NULL OR char_length(end_reason) <= 64),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX voice_sessions_user_idx ON voice_sessions (user_id, started_at DESC);
-- Sessions still open (a restart closes them).
CREATE INDEX voice_sessions_open_idx ON voice_sessions (channel_id) WHERE ended_at IS NULL;
