-- Integrations (docs/bots.md): incoming webhooks, bot accounts, slash commands and their
-- interactions.

-- Bot accounts and webhooks are users too: their messages need an author row, and a bot uses
-- the same REST API and gateway as a person. `bot` marks both (the web client tags them).
ALTER TABLE users ADD COLUMN bot BOOLEAN NOT NULL DEFAULT false;

-- An incoming webhook posts into one channel. Its id is the id of the user row that authors
-- its messages; deleting the webhook keeps that row, so what it posted stays readable. Only a
-- SHA-256 of the secret token is kept: the token is shown once, at creation.
CREATE TABLE webhooks (
    id          BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    channel_id  BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    token_hash  BYTEA NOT NULL CHECK (octet_length(token_hash) = 32),
    creator_id  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_channel_idx ON webhooks (channel_id);
CREATE INDEX webhooks_server_idx ON webhooks (server_id);

-- A webhook post names itself per message (`username`, `avatar_url` of the request).
ALTER TABLE messages
    ADD COLUMN webhook_id    BIGINT,
    ADD COLUMN author_name   TEXT CHECK (author_name IS NULL OR char_length(author_name) BETWEEN 1 AND 64),
    ADD COLUMN author_avatar TEXT CHECK (author_avatar IS NULL OR char_length(author_avatar) <= 2048);

-- A bot belongs to the server it was made in, holds that server's role it was given (its
-- permissions), and authenticates with `Authorization: Bot <token>`. The token's login session
-- (`session_id`) is what a reset revokes, which also closes the bot's gateway connections.
CREATE TABLE bots (
    user_id     BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    role_id     BIGINT REFERENCES roles (id) ON DELETE SET NULL,
    creator_id  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    session_id  BIGINT NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    token_hash  BYTEA NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bots_server_idx ON bots (server_id);

-- Slash commands a bot registered in its server. Names are unique per server so that `/name`
-- in the composer means one command.
CREATE TABLE app_commands (
    id           BIGINT PRIMARY KEY,
    bot_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id    BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (name ~ '^[a-z0-9_-]{1,32}$'),
    description  TEXT NOT NULL CHECK (char_length(description) BETWEEN 1 AND 100),
    options      JSONB NOT NULL DEFAULT '[]',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (server_id, name)
);

-- One use of a command. The state moves once, by compare-and-set, so a reply racing the
-- deadline either lands or is refused, never both: pending → answered | deferred | failed,
-- deferred → answered | failed.
CREATE TABLE interactions (
    id           BIGINT PRIMARY KEY,
    token_hash   BYTEA NOT NULL CHECK (octet_length(token_hash) = 32),
    command_id   BIGINT REFERENCES app_commands (id) ON DELETE SET NULL,
    bot_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id    BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    channel_id   BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'deferred', 'answered', 'failed')),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX interactions_created_idx ON interactions (created_at);
