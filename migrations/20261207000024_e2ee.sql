-- End-to-end encrypted voice channels: the flag is the only thing stored. Identity keys are
-- live voice state (sent in VOICE_STATE_UPDATE, held in memory), media keys never reach the
-- server in clear.
ALTER TABLE channels ADD COLUMN e2ee boolean NOT NULL DEFAULT false;
