-- Account deletion, as Discord does it: the users row stays so that messages, DMs and audit-log
-- entries keep an author, but it is anonymised (username `deleted_user_<id>`, display name
-- "Deleted User", no email, avatar or status) and can never log in again (the password hash
-- is replaced by a value no password verifies against). `deleted_at` records when, and lets
-- lookups by name (login, friend requests) and new DMs skip such accounts.
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMPTZ;
