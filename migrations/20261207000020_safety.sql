-- Safety: automod rules, raid protection with verification levels, and member reports.

-- One row per server that changed a safety setting; a server without a row has the defaults
-- (verification none, raid detection off, raid mode off). Detection is opt-in: a server
-- expecting a burst of joins (an event, a launch) must not find its newcomers held back.
CREATE TABLE server_safety (
    server_id              BIGINT PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    -- Discord's levels: 0 none, 2 medium (account older than 5 min), 3 high (member for
    -- 10 min), 4 highest (high, and every newcomer clicks "I am human"). 1 (low: a verified
    -- email) is refused: Confab does not verify email addresses.
    verification_level     SMALLINT NOT NULL DEFAULT 0 CHECK (verification_level IN (0, 2, 3, 4)),
    -- Raid detection: this many joins within the window turn raid mode on (0 = never).
    raid_join_threshold    INTEGER NOT NULL DEFAULT 0 CHECK (raid_join_threshold BETWEEN 0 AND 10000),
    raid_join_window_secs  INTEGER NOT NULL DEFAULT 10 CHECK (raid_join_window_secs BETWEEN 1 AND 3600),
    -- In raid mode, newcomers may not post for this many minutes.
    raid_restrict_minutes  INTEGER NOT NULL DEFAULT 10 CHECK (raid_restrict_minutes BETWEEN 0 AND 1440),
    -- In raid mode, accounts younger than this may not join at all (0 = any age).
    raid_min_account_age_secs INTEGER NOT NULL DEFAULT 0 CHECK (raid_min_account_age_secs BETWEEN 0 AND 2592000),
    raid_mode              BOOLEAN NOT NULL DEFAULT false,
    raid_mode_since        TIMESTAMPTZ,
    -- Where raid alerts (and, by default, nothing else) are posted.
    alert_channel_id       BIGINT REFERENCES channels (id) ON DELETE SET NULL
);

-- Newcomers who joined in raid mode (or under "highest") must click through before posting;
-- and may be held back from posting until `restricted_until`.
ALTER TABLE members ADD COLUMN pending BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN restricted_until TIMESTAMPTZ;
-- The join-rate count reads the recent joins of one server.
CREATE INDEX members_server_joined_idx ON members (server_id, joined_at);

CREATE TABLE automod_rules (
    id               BIGINT PRIMARY KEY,
    server_id        BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name             TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    enabled          BOOLEAN NOT NULL DEFAULT true,
    kind             TEXT NOT NULL CHECK (kind IN ('keyword', 'regex', 'mention_spam', 'links', 'invites')),
    keywords         TEXT[] NOT NULL DEFAULT '{}',
    patterns         TEXT[] NOT NULL DEFAULT '{}',
    mention_limit    INTEGER CHECK (mention_limit IS NULL OR mention_limit BETWEEN 1 AND 50),
    allowed_domains  TEXT[] NOT NULL DEFAULT '{}',
    -- Actions: refuse the message (with `block_message` shown to the sender), post an alert
    -- into `alert_channel_id`, time the author out for `timeout_seconds`.
    block            BOOLEAN NOT NULL DEFAULT true,
    block_message    TEXT CHECK (block_message IS NULL OR char_length(block_message) <= 150),
    alert_channel_id BIGINT REFERENCES channels (id) ON DELETE SET NULL,
    timeout_seconds  INTEGER CHECK (timeout_seconds IS NULL OR timeout_seconds BETWEEN 1 AND 2419200),
    exempt_roles     BIGINT[] NOT NULL DEFAULT '{}',
    exempt_channels  BIGINT[] NOT NULL DEFAULT '{}',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX automod_rules_server_idx ON automod_rules (server_id);

-- A member's report of a message or a user. The message's content is copied, so the report
-- still says what was reported after the message is deleted.
CREATE TABLE reports (
    id              BIGINT PRIMARY KEY,
    server_id       BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    reporter_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id      BIGINT REFERENCES channels (id) ON DELETE SET NULL,
    message_id      BIGINT,
    message_content TEXT,
    reason          TEXT NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 512),
    status          TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'dismissed')),
    resolution      TEXT,
    resolved_by     BIGINT REFERENCES users (id) ON DELETE SET NULL,
    resolved_at     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reports_server_open_idx ON reports (server_id, id) WHERE status = 'open';
