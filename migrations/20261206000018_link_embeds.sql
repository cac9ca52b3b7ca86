-- Link previews (docs/link-previews.md).
--
-- The cache, one row per previewed URL (keyed by the SHA-256 of the URL as written): what the
-- page said, when it was fetched, and its preview image. `embed` is NULL when the page had
-- nothing to show or could not be fetched (a negative entry, kept for a shorter time so a
-- flood of one bad link is not refetched). The image lives in the row, like soundboard sounds:
-- at most 1 MiB, its type sniffed from the bytes. `image_key` is random and is what the image
-- URL carries: knowing a link is not enough to find its image in this server.
CREATE TABLE link_previews (
    url_hash     BYTEA PRIMARY KEY CHECK (octet_length(url_hash) = 32),
    url          TEXT NOT NULL CHECK (char_length(url) <= 2048),
    embed        JSONB,
    fetched_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    image_key    UUID UNIQUE,
    image_type   TEXT CHECK (image_type IN ('image/png', 'image/jpeg', 'image/gif', 'image/webp')),
    image        BYTEA CHECK (octet_length(image) <= 1048576),
    CHECK ((image_key IS NULL) = (image IS NULL) AND (image IS NULL) = (image_type IS NULL))
);
-- The cache's expiry sweep.
CREATE INDEX link_previews_fetched_idx ON link_previews (fetched_at);

-- Per message: the embeds shown under it (a JSON array, Discord's shape), and flags
-- (4 = SUPPRESS_EMBEDS: the author removed the previews; no more are made for it).
ALTER TABLE messages
    ADD COLUMN embeds JSONB NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;
