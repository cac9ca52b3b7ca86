-- Soundboard: short sounds uploaded per server, played into voice channels by members
-- (docs/soundboard.md). The audio lives in the row: a sound is at most 512 KiB and a server
-- holds at most 48 of them, so a server's whole soundboard stays under 25 MiB and needs no
-- separate file store (one less thing to back up, replicate or clean up on server deletion).
CREATE TABLE soundboard_sounds (
    id           BIGINT PRIMARY KEY,
    server_id    BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 32),
    emoji        TEXT CHECK (emoji IS NULL OR char_length(emoji) BETWEEN 1 AND 32),
    -- Playback gain the uploader chose, 0..1; each listener's own volume applies on top.
    volume       REAL NOT NULL DEFAULT 1 CHECK (volume >= 0 AND volume <= 1),
    uploader_id  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    -- Sniffed from the bytes, never taken from the upload's header.
    content_type TEXT NOT NULL CHECK (content_type IN ('audio/ogg', 'audio/mpeg', 'audio/wav')),
    duration_ms  INTEGER NOT NULL CHECK (duration_ms > 0),
    audio        BYTEA NOT NULL CHECK (octet_length(audio) <= 524288),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX soundboard_sounds_server_idx ON soundboard_sounds (server_id, id);

-- USE_SOUNDBOARD (1 << 42) is part of @everyone's defaults in new servers; existing servers
-- get it where @everyone may speak, as if they had been created with it.
UPDATE roles SET permissions = permissions | 4398046511104
WHERE id = server_id AND permissions & 2097152 <> 0;
