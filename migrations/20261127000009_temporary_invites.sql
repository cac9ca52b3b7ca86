-- Temporary membership: a member who joined through a `temporary` invite is removed when their
-- last gateway session ends, unless they were given a role in the meantime.
ALTER TABLE invites ADD COLUMN temporary BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE members ADD COLUMN temporary BOOLEAN NOT NULL DEFAULT false;
-- Found at every disconnect of their user: keep that lookup on the few temporary rows.
CREATE INDEX members_temporary_idx ON members (user_id) WHERE temporary;
