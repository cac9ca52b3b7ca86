-- Direct messages: 1:1 DMs and group DMs (up to 10 people).
--
-- A DM is a row of `channels` with `server_id` NULL and kind 'dm' or 'group_dm', not a table of
-- its own: messages, reactions, pins and read states all reference `channels (id)`, so history,
-- edits, deletes, reactions and typing keep one code path and one set of foreign keys. Only the
-- access decision differs: for a DM it is "is a recipient" (dm_recipients) instead of the
-- server's permission computation. The CHECK below keeps the two kinds apart.

ALTER TABLE channels ALTER COLUMN server_id DROP NOT NULL;
ALTER TABLE channels ALTER COLUMN name DROP NOT NULL;
ALTER TABLE channels DROP CONSTRAINT channels_kind_check;
ALTER TABLE channels ADD CONSTRAINT channels_kind_check
    CHECK (kind IN ('text', 'voice', 'category', 'dm', 'group_dm'));
-- Server channels have a server and a name; DMs have neither (a group DM may be named).
ALTER TABLE channels ADD CONSTRAINT channels_dm_shape CHECK (
    CASE WHEN kind IN ('dm', 'group_dm') THEN server_id IS NULL AND parent_id IS NULL
         ELSE server_id IS NOT NULL AND name IS NOT NULL END);
-- The group DM's owner (may add and remove recipients); NULL for 1:1 DMs.
ALTER TABLE channels ADD COLUMN owner_id BIGINT REFERENCES users (id) ON DELETE SET NULL;

CREATE TABLE dm_recipients (
    channel_id  BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);
-- "My DMs" (READY, GET /users/@me/channels).
CREATE INDEX dm_recipients_user_idx ON dm_recipients (user_id);

-- At most one 1:1 DM per pair: opening it again returns the same channel, even when both open
-- it at the same moment (the primary key decides the race).
CREATE TABLE dm_pairs (
    low_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    high_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id  BIGINT NOT NULL UNIQUE REFERENCES channels (id) ON DELETE CASCADE,
    PRIMARY KEY (low_id, high_id),
    CHECK (low_id < high_id)
);
