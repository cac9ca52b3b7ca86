-- Threads and forum channels.
--
-- A thread is a row of `channels` (kind 'public_thread' or 'private_thread') whose parent_id is
-- the text or forum channel it belongs to: messages, reactions, pins, read states and typing
-- keep their one code path, as for DMs. What only a thread has lives in `threads`, keyed by
-- the channel, so listing a parent's threads by activity reads one narrow index.
ALTER TABLE channels DROP CONSTRAINT channels_kind_check;
ALTER TABLE channels ADD CONSTRAINT channels_kind_check
    CHECK (kind IN ('text', 'voice', 'stage', 'category', 'dm', 'group_dm',
                    'forum', 'public_thread', 'private_thread'));

CREATE TABLE threads (
    channel_id           BIGINT PRIMARY KEY REFERENCES channels (id) ON DELETE CASCADE,
    -- The text or forum channel; deleting it deletes its threads (see `delete_channel`, which
    -- removes the threads' channel rows too).
    parent_id            BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    private              BOOLEAN NOT NULL DEFAULT false,
    -- The message the thread was started from (at most one thread per message).
    starter_message_id   BIGINT UNIQUE REFERENCES messages (id) ON DELETE SET NULL,
    archived             BOOLEAN NOT NULL DEFAULT false,
    -- A locked thread stays archived until someone with MANAGE_THREADS reopens it.
    locked               BOOLEAN NOT NULL DEFAULT false,
    -- Discord's durations: 1 h, 24 h, 3 d, 7 d of inactivity.
    auto_archive_minutes INTEGER NOT NULL DEFAULT 1440
        CHECK (auto_archive_minutes IN (60, 1440, 4320, 10080)),
    archived_at          TIMESTAMPTZ,
    last_message_id      BIGINT,
    message_count        INTEGER NOT NULL DEFAULT 0,
    last_activity_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Forum posts: ids of the forum's tags (at most 5).
    applied_tags         BIGINT[] NOT NULL DEFAULT '{}' CHECK (cardinality(applied_tags) <= 5),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The thread list of a channel: newest activity first, active and archived apart.
CREATE INDEX threads_parent_activity_idx
    ON threads (parent_id, archived, last_activity_at DESC, channel_id DESC);
-- ... and both together (a forum's post list).
CREATE INDEX threads_parent_all_activity_idx
    ON threads (parent_id, last_activity_at DESC, channel_id DESC);
-- The archive worker reads only active threads.
CREATE INDEX threads_active_idx ON threads (last_activity_at) WHERE NOT archived;

CREATE TABLE thread_members (
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX thread_members_user_idx ON thread_members (user_id);

-- A forum's tags (at most 20 per forum, enforced by the service).
CREATE TABLE forum_tags (
    id         BIGINT PRIMARY KEY,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    name       TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 20),
    position   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (channel_id, name)
);

-- Existing servers get Discord's defaults for the new bits on @everyone (the @everyone role's
-- id is the server's): create public and private threads, send messages in threads.
UPDATE roles SET permissions = permissions | (1::bigint << 35) | (1::bigint << 36) | (1::bigint << 38)
WHERE id IN (SELECT id FROM servers);
