-- The node serving each voice session (its snowflake worker lease holder): in a cluster, a
-- starting node closes only the sessions of nodes that are gone.
ALTER TABLE voice_sessions ADD COLUMN node TEXT;
