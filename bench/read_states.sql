-- Read-state queries at scale: READY's mention counts and the channels' newest message ids.
-- Run against an empty database that `confab --database-url …` has migrated (then stopped):
--   psql "$URL" -f bench/read_states.sql
-- Data: 100 users in one server, 50 busy text channels sharing 500,000 messages (1 in 100
-- mentions user 7), and one quiet channel whose only message is the oldest.
\set ON_ERROR_STOP on
INSERT INTO users (id, username, password_hash) SELECT g, 'u' || g, 'x' FROM generate_series(1, 100) g;
INSERT INTO servers (id, name, owner_id) VALUES (1000, 's', 1);
INSERT INTO roles (id, server_id, name, permissions) VALUES (1000, 1000, '@everyone', 0);
INSERT INTO members (server_id, user_id) SELECT 1000, g FROM generate_series(1, 100) g;
INSERT INTO channels (id, server_id, kind, name) SELECT 2000 + g, 1000, 'text', 'c' || g FROM generate_series(1, 50) g;
INSERT INTO channels (id, server_id, kind, name) VALUES (2100, 1000, 'text', 'quiet');
INSERT INTO messages (id, channel_id, author_id, content) VALUES (50, 2100, 1, 'old');
INSERT INTO messages (id, channel_id, author_id, content, mentions)
SELECT 100000 + g, 2001 + (g % 50), 1 + (g % 100), 'hello',
       CASE WHEN g % 100 = 0 THEN '["7"]'::jsonb ELSE '[]'::jsonb END
FROM generate_series(1, 500000) g;
-- User 7 has read each busy channel up to 1,000 messages before its end.
INSERT INTO read_states (user_id, channel_id, last_message_id)
SELECT 7, c.id, (SELECT id FROM messages WHERE channel_id = c.id ORDER BY id DESC OFFSET 1000 LIMIT 1)
FROM channels c WHERE c.id <> 2100;
ANALYZE;

\echo '1. READY mention counts (the query of Chat::read_states_in)'
EXPLAIN (ANALYZE, COSTS OFF) WITH mine AS (
     SELECT c.id, c.server_id FROM channels c
     JOIN members mb ON mb.server_id = c.server_id AND mb.user_id = 7 WHERE c.kind = 'text'
     UNION ALL
     SELECT d.channel_id, NULL FROM dm_recipients d WHERE d.user_id = 7
 ), my_roles AS (
     SELECT server_id, array_agg(role_id::text) AS roles FROM member_roles WHERE user_id = 7 GROUP BY server_id
 )
 SELECT channel_id, last_message_id, (SELECT count(*) FROM (SELECT 1 FROM messages m
        WHERE m.channel_id = ch AND m.id > after AND m.author_id <> 7
          AND (m.mention_everyone OR m.mentions <> '[]'::jsonb OR m.mention_roles <> '[]'::jsonb)
          AND (m.mention_everyone OR m.mentions ? '7' OR m.mention_roles ?| roles)
        LIMIT 100) x) AS mention_count
 FROM (SELECT mine.id AS ch, mine.id AS channel_id, rs.last_message_id,
              coalesce(rs.last_message_id, 0) AS after, coalesce(r.roles, '{}'::text[]) AS roles
       FROM mine LEFT JOIN read_states rs ON rs.user_id = 7 AND rs.channel_id = mine.id
       LEFT JOIN my_roles r ON r.server_id = mine.server_id) p;

\echo '2. Newest message per channel, plain equality (the planner walks the primary key)'
EXPLAIN (ANALYZE, COSTS OFF) SELECT c.id, m.id FROM unnest(ARRAY(SELECT id FROM channels)) AS c(id)
CROSS JOIN LATERAL (SELECT id FROM messages WHERE channel_id = c.id ORDER BY id DESC LIMIT 1) m;

\echo '3. Newest message per channel, row bounds (the query of Chat::last_message_ids)'
EXPLAIN (ANALYZE, COSTS OFF) SELECT c.id, m.id FROM unnest(ARRAY(SELECT id FROM channels)) AS c(id)
CROSS JOIN LATERAL (SELECT id FROM messages
    WHERE (channel_id, id) > (c.id, 0) AND (channel_id, id) < (c.id, 9223372036854775807)
    ORDER BY channel_id DESC, id DESC LIMIT 1) m;
