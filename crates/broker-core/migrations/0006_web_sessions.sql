-- Whether a session was made by signing in on the web pages (1) or through the API (0, every
-- session before this column): the admin pages take only the former, so a client's saved API
-- token is no key to them.
ALTER TABLE sessions ADD COLUMN web INTEGER NOT NULL DEFAULT 0;
