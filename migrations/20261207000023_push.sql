-- Web Push (docs/push.md): the server's VAPID key, users' push subscriptions and their
-- notification settings per server and per channel.

-- One VAPID key pair for the whole deployment: every api node of a cluster signs with the same
-- key (browsers tie a subscription to the public key it was made with). The first node to start
-- inserts it; the others read it.
CREATE TABLE vapid_keys (
    id           SMALLINT PRIMARY KEY CHECK (id = 1),
    -- The P-256 private key, PKCS#8 DER.
    private_key  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A browser's push subscription. An endpoint is one browser profile's: subscribing it again
-- (another account in the same browser) moves it to the new user.
CREATE TABLE push_subscriptions (
    id          BIGINT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint    TEXT NOT NULL UNIQUE CHECK (char_length(endpoint) <= 2048),
    -- The browser's P-256 public key (65 bytes, uncompressed) and auth secret (16 bytes).
    p256dh      BYTEA NOT NULL CHECK (octet_length(p256dh) = 65),
    auth        BYTEA NOT NULL CHECK (octet_length(auth) = 16),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user_idx ON push_subscriptions (user_id);

-- Per-server settings; a missing row or a NULL level means the default (docs/push.md).
-- level: 0 = all messages, 1 = only mentions, 2 = nothing.
CREATE TABLE server_notification_settings (
    user_id            BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id          BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    level              SMALLINT CHECK (level BETWEEN 0 AND 2),
    muted_until        TIMESTAMPTZ,
    suppress_everyone  BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, server_id)
);

-- Per-channel (and per-DM) settings: a level here overrides the server's.
CREATE TABLE channel_notification_settings (
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id   BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    level        SMALLINT CHECK (level BETWEEN 0 AND 2),
    muted_until  TIMESTAMPTZ,
    PRIMARY KEY (user_id, channel_id)
);
