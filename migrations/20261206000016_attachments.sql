-- Files attached to messages, and the blobs behind avatars and server icons (docs/files.md).
-- The bytes live in the file store (local directory or S3-compatible bucket) under random keys;
-- these rows say what each key is and who may read it.

-- A message may now be only files: empty content is allowed, and the service requires content
-- or at least one attachment.
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_content_check;
ALTER TABLE messages ADD CONSTRAINT messages_content_check CHECK (char_length(content) <= 4000);

CREATE TABLE attachments (
    id             BIGINT PRIMARY KEY,
    message_id     BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    channel_id     BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- Null for DM channels; what per-server quotas sum over.
    server_id      BIGINT REFERENCES servers (id) ON DELETE CASCADE,
    uploader_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Shown and used for the download's Content-Disposition; never a path in the store.
    filename       TEXT NOT NULL CHECK (char_length(filename) BETWEEN 1 AND 255),
    -- Sniffed from the bytes, never taken from the client.
    content_type   TEXT NOT NULL CHECK (char_length(content_type) <= 128),
    size           BIGINT NOT NULL CHECK (size >= 0),
    storage_key    TEXT NOT NULL UNIQUE,
    width          INTEGER,
    height         INTEGER,
    -- Set by the thumbnail worker once the preview exists ('' when none can be made).
    thumbnail_key  TEXT,
    -- When a node's thumbnail worker took it (another node takes it after a minute).
    thumbnail_claimed_at TIMESTAMPTZ,
    position       SMALLINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX attachments_message_idx ON attachments (message_id, position);
CREATE INDEX attachments_uploader_idx ON attachments (uploader_id);
CREATE INDEX attachments_server_idx ON attachments (server_id) WHERE server_id IS NOT NULL;
-- What the thumbnail workers poll: small whatever the table's size.
CREATE INDEX attachments_pending_thumbnails_idx ON attachments (id)
    WHERE thumbnail_key IS NULL AND content_type LIKE 'image/%';

-- Store keys whose rows are gone (message, channel, server or account deleted, avatar replaced):
-- a background sweeper deletes the objects and then these rows, so a crash between the two
-- steps only repeats a delete.
CREATE TABLE file_deletions (
    storage_key  TEXT PRIMARY KEY,
    queued_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION attachments_queue_deletion() RETURNS trigger AS $$
BEGIN
    INSERT INTO file_deletions (storage_key) VALUES (OLD.storage_key) ON CONFLICT DO NOTHING;
    IF OLD.thumbnail_key IS NOT NULL THEN
        INSERT INTO file_deletions (storage_key) VALUES (OLD.thumbnail_key) ON CONFLICT DO NOTHING;
    END IF;
    RETURN OLD;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER attachments_queue_deletion AFTER DELETE ON attachments
    FOR EACH ROW EXECUTE FUNCTION attachments_queue_deletion();

-- Avatars and server icons: the store key of the uploaded image (served by
-- /api/v1/avatars/{user_id}/… and /api/v1/icons/{server_id}/…, the URLs kept beside them).
ALTER TABLE users ADD COLUMN avatar_key TEXT;
ALTER TABLE servers ADD COLUMN icon_key TEXT,
    ADD COLUMN icon_url TEXT CHECK (icon_url IS NULL OR char_length(icon_url) <= 256);
