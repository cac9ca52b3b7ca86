-- Replies and mentions. Mentions are resolved when the message is sent (members, roles of the
-- server, @everyone only with MENTION_EVERYONE) and stored with it.
ALTER TABLE messages
    ADD COLUMN reply_to          BIGINT REFERENCES messages (id) ON DELETE SET NULL,
    ADD COLUMN mentions          JSONB NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN mention_roles     JSONB NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN mention_everyone  BOOLEAN NOT NULL DEFAULT false;
