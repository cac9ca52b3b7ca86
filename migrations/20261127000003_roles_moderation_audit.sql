-- Roles and permissions, channel overwrites, moderation (bans, timeouts) and the audit log.

ALTER TABLE roles
    ADD COLUMN color        INTEGER NOT NULL DEFAULT 0 CHECK (color BETWEEN 0 AND 16777215),
    ADD COLUMN hoist        BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN mentionable  BOOLEAN NOT NULL DEFAULT false;

-- Roles a member holds (besides @everyone, which everyone holds implicitly).
CREATE TABLE member_roles (
    server_id  BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    role_id    BIGINT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (server_id, user_id, role_id),
    FOREIGN KEY (server_id, user_id) REFERENCES members (server_id, user_id) ON DELETE CASCADE
);
CREATE INDEX member_roles_role_idx ON member_roles (role_id);

-- Per-channel allow/deny for a role (target = role id; @everyone's id is the server id) or a
-- member (target = user id).
CREATE TABLE channel_overwrites (
    channel_id  BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    target_id   BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('role', 'member')),
    allow       BIGINT NOT NULL DEFAULT 0,
    deny        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, target_id),
    CHECK (allow & deny = 0)
);

-- A channel in a category with `permissions_synced` uses the category's overwrites.
ALTER TABLE channels ADD COLUMN permissions_synced BOOLEAN NOT NULL DEFAULT true;

-- Timeout: until then the member can read but not send, react, speak or join voice.
ALTER TABLE members ADD COLUMN timeout_until TIMESTAMPTZ;

CREATE TABLE bans (
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    actor_id    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    reason      TEXT CHECK (reason IS NULL OR char_length(reason) <= 512),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, user_id)
);

-- Administrative actions, written in the same transaction as the change.
CREATE TABLE audit_log (
    id          BIGINT PRIMARY KEY,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    actor_id    BIGINT REFERENCES users (id) ON DELETE SET NULL,
    action      TEXT NOT NULL CHECK (char_length(action) BETWEEN 1 AND 64),
    target_id   BIGINT,
    changes     JSONB NOT NULL DEFAULT '{}'::jsonb,
    reason      TEXT CHECK (reason IS NULL OR char_length(reason) <= 512),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_server_idx ON audit_log (server_id, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (server_id, actor_id, id DESC);
