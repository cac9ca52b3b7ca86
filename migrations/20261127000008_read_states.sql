-- Read states: how far each user has read each channel (server channels and DMs).
--
-- Sending a message writes nothing here: unread is "the channel's newest message id is above
-- last_message_id", and mention counts are counted when asked (ack, READY) over the messages
-- after last_message_id that mention someone, through the partial index below. A message
-- fan-out therefore never costs a write per recipient.
CREATE TABLE read_states (
    user_id          BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id       BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- Not a foreign key: the acknowledged message may be deleted later; the position stays.
    last_message_id  BIGINT NOT NULL,
    -- Mentions of the user after last_message_id when it was acknowledged.
    mention_count    INTEGER NOT NULL DEFAULT 0 CHECK (mention_count >= 0),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel_id)
);
CREATE INDEX read_states_channel_idx ON read_states (channel_id);

-- Only messages that mention someone: what mention counts scan.
CREATE INDEX messages_mentioning_idx ON messages (channel_id, id)
    WHERE mention_everyone OR mentions <> '[]'::jsonb OR mention_roles <> '[]'::jsonb;
