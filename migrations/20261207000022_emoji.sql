-- Custom emoji and stickers, uploaded per server (docs/emoji.md). The images live in the file
-- store like attachments and avatars; these rows record what each key is. Deleting a row (or
-- its server) queues the object's deletion through the same sweeper as attachments.
CREATE TABLE server_emojis (
    id            BIGINT PRIMARY KEY,
    server_id     BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    -- What `:name:` and `<:name:id>` spell, so word characters only.
    name          TEXT NOT NULL CHECK (name ~ '^[A-Za-z0-9_]{2,32}$'),
    animated      BOOLEAN NOT NULL,
    -- Sniffed from the bytes; static uploads are re-encoded as PNG.
    content_type  TEXT NOT NULL CHECK (content_type IN ('image/png', 'image/gif', 'image/webp')),
    storage_key   TEXT NOT NULL,
    -- Roles allowed to use it; empty = everyone. Ids of deleted roles simply match no one.
    roles         BIGINT[] NOT NULL DEFAULT '{}',
    creator_id    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (server_id, name)
);

CREATE TABLE server_stickers (
    id            BIGINT PRIMARY KEY,
    server_id     BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name          TEXT NOT NULL CHECK (char_length(name) BETWEEN 2 AND 30),
    description   TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 100),
    animated      BOOLEAN NOT NULL,
    content_type  TEXT NOT NULL CHECK (content_type IN ('image/png', 'image/gif', 'image/webp')),
    storage_key   TEXT NOT NULL,
    creator_id    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (server_id, name)
);

CREATE FUNCTION expressions_queue_deletion() RETURNS trigger AS $$
BEGIN
    INSERT INTO file_deletions (storage_key) VALUES (OLD.storage_key) ON CONFLICT DO NOTHING;
    RETURN OLD;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER server_emojis_queue_deletion AFTER DELETE ON server_emojis
    FOR EACH ROW EXECUTE FUNCTION expressions_queue_deletion();
CREATE TRIGGER server_stickers_queue_deletion AFTER DELETE ON server_stickers
    FOR EACH ROW EXECUTE FUNCTION expressions_queue_deletion();

-- A message's stickers as they were when it was sent ([{id, name, format}]): the message keeps
-- its name after the sticker is deleted (its image then answers 404).
ALTER TABLE messages ADD COLUMN stickers JSONB NOT NULL DEFAULT '[]';

-- A custom reaction is stored as `name:id` (up to 32 + 1 + 20 characters).
ALTER TABLE reactions DROP CONSTRAINT reactions_emoji_check;
ALTER TABLE reactions ADD CONSTRAINT reactions_emoji_check CHECK (char_length(emoji) BETWEEN 1 AND 64);
