-- Friends and blocks. One row per direction: (user, other, kind) says what `other` is to
-- `user`: a friend, a request `user` sent (outgoing) or received (incoming), or blocked by `user`.
CREATE TABLE relationships (
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    other_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('friend', 'incoming', 'outgoing', 'blocked')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, other_id),
    CHECK (user_id <> other_id)
);
CREATE INDEX relationships_other_idx ON relationships (other_id);
