-- Which media nodes each voice channel lives on, in a cluster (docs/cluster.md, "Voice").
-- `version` makes every change a compare-and-set: two api nodes never place one channel twice.
CREATE TABLE voice_placements (
    channel_id BIGINT PRIMARY KEY REFERENCES channels (id) ON DELETE CASCADE,
    nodes TEXT[] NOT NULL,
    version BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
