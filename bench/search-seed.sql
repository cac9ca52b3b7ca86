-- Seeds messages for the search benchmark (bench/search.sh) straight into PostgreSQL.
--   psql -v server=SERVER_ID -v authors='{ID,ID,...}' -v n=1000000 -f bench/search-seed.sql
-- The server, its text channels and the authors exist already (made through the API).
--
-- Content: 6-20 words each from a 5,000-word vocabulary with a Zipf-like spread (a word's
-- chance falls with its rank: log-uniform ranks), so some words are in most messages and
-- most words in few, as in real chat; 2% carry a link, 1% mention someone (every 53rd and
-- 101st: spread over all the channels, which go round by 50). Messages spread over the past
-- year, their ids minted as the server does (snowflake time bits), older than anything the
-- running server will send.
\set ON_ERROR_STOP on

DROP TABLE IF EXISTS bench_words;
CREATE TABLE bench_words AS
SELECT i AS rank, left(translate(md5(i::text), '0123456789', 'ghijklmnop'), 4 + i % 5) AS word
FROM generate_series(1, 5000) i;

-- Bulk load without the secondary indexes, then build them once (as the migrations define
-- them): far faster than maintaining a GIN index row by row.
DROP INDEX IF EXISTS messages_search_idx;
DROP INDEX IF EXISTS messages_author_idx;
DROP INDEX IF EXISTS messages_channel_id_idx;
DROP INDEX IF EXISTS messages_mentioning_idx;
DROP INDEX IF EXISTS messages_links_idx;
DROP INDEX IF EXISTS messages_mentions_idx;
SET maintenance_work_mem = '256MB';

INSERT INTO messages (id, channel_id, author_id, content, created_at, mentions)
SELECT ((extract(epoch FROM t) * 1000)::bigint - 1767225600000) << 22 | (g % 4096),
       ch.ids[1 + g % array_length(ch.ids, 1)],
       au.ids[1 + (g * 7) % array_length(au.ids, 1)],
       body.text || CASE WHEN g % 53 = 0 THEN ' https://example.com/p/' || g ELSE '' END,
       t,
       CASE WHEN g % 101 = 1 THEN jsonb_build_array(au.ids[1]::text) ELSE '[]'::jsonb END
FROM generate_series(1, :n) g
CROSS JOIN (SELECT array_agg(word ORDER BY rank) AS words FROM bench_words) w
CROSS JOIN (SELECT array_agg(id ORDER BY id) AS ids FROM channels
            WHERE server_id = :server AND kind = 'text') ch
CROSS JOIN (SELECT :'authors'::bigint[] AS ids) au
CROSS JOIN LATERAL (SELECT now() - interval '1 hour' - (:n - g) * interval '30 seconds' AS t) tm
CROSS JOIN LATERAL (
    -- (`+ 0 * s` ties the aggregate to this level: one word per row of s)
    SELECT string_agg(w.words[floor(exp(random() * ln(5000)))::int + 0 * s], ' ') AS text
    FROM generate_series(1, 6 + (g::bigint * 7919) % 15) s
) body;

CREATE INDEX messages_channel_id_idx ON messages (channel_id, id);
CREATE INDEX messages_mentioning_idx ON messages (channel_id, id)
    WHERE mention_everyone OR mentions <> '[]'::jsonb OR mention_roles <> '[]'::jsonb;
CREATE INDEX messages_author_idx ON messages (author_id, id);
CREATE INDEX messages_links_idx ON messages (id) WHERE content ~* 'https?://';
CREATE INDEX messages_mentions_idx ON messages USING GIN (mentions) WHERE mentions <> '[]'::jsonb;
CREATE INDEX messages_search_idx ON messages USING GIN (search_vector);
VACUUM ANALYZE messages;
