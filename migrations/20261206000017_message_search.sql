-- Message search (docs/search.md): PostgreSQL full-text search over message content.
--
-- Each message carries a generated `search_vector`: the content as the search language sees it
-- (stemmed, stop words dropped: "running" finds "runs") followed by the content as the `simple`
-- configuration sees it (every word lower-cased, nothing dropped), so words the language does
-- not know, names and stop words are still found as typed. The query side builds the same two
-- halves (`websearch_to_tsquery` with each configuration, OR-ed), see chat/src/search.rs.

-- The search language, in one place: the generated column and every query call this. To search
-- in another language, replace the function with another configuration (`\dF` in psql lists
-- them, e.g. 'german', 'french') and rewrite the column; docs/search.md shows the statements.
CREATE FUNCTION message_search_config() RETURNS regconfig
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 'english'::regconfig $$;

-- Adding a stored generated column rewrites the table once (a few seconds per million
-- messages); from then on PostgreSQL keeps it up to date on every insert and edit.
ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    to_tsvector(message_search_config(), content) || to_tsvector('simple'::regconfig, content)
) STORED;

-- What `@@` uses. fastupdate stays on (the default): inserts go to the pending list and are
-- merged in batches, so sending a message does not pay for the index at once.
CREATE INDEX messages_search_idx ON messages USING GIN (search_vector);

-- The planner chooses between the GIN bitmap and walking ids backwards by how common it
-- thinks the words are; the default statistics keep the 1,000 most common words, and every
-- other word is guessed as common as the rarest of those, which sends searches for rare words
-- on a walk through the whole table. Ten thousand words guess well (docs/search.md).
ALTER TABLE messages ALTER COLUMN search_vector SET STATISTICS 1000;

-- `from:` without text walks one author's messages newest first.
CREATE INDEX messages_author_idx ON messages (author_id, id);

-- `has:link` and `mentions:` without words: small partial indexes over the messages that can
-- match, so a filter that matches few messages does not walk the whole table. The query
-- repeats each predicate exactly (chat/src/search.rs), which is what lets the planner use them.
CREATE INDEX messages_links_idx ON messages (id) WHERE content ~* 'https?://';
CREATE INDEX messages_mentions_idx ON messages USING GIN (mentions) WHERE mentions <> '[]'::jsonb;
