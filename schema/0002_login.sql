-- 0002_login: what the login front-end keeps in Postgres.
--
-- Applied by `tokensvc migrate` after 0001_initial, in one transaction. Never edit an applied
-- migration: add 0003_*.sql instead.

-- Whether the login front-end always asks the user to consent for this client (a third-party
-- app), or may skip the screen when nothing new is asked (a first-party app: the default).
ALTER TABLE clients ADD COLUMN require_consent boolean NOT NULL DEFAULT false;

-- Scopes a person has agreed to let a client have, remembered so the consent screen is shown
-- again only when a client asks for more. One row per (person, client); granting more adds to
-- `scopes` in one upsert (ConsentStore.grant), so concurrent grants never lose a scope.
-- `sub` is not a foreign key: users are not removed, and an identity store outside this
-- database must stay possible. Removing a client forgets every consent given to it.
CREATE TABLE consents (
    sub        text NOT NULL,
    client_id  text NOT NULL REFERENCES clients ON DELETE CASCADE,
    scopes     text[] NOT NULL,                  -- sorted, without duplicates
    granted_at timestamptz NOT NULL DEFAULT now(),  -- the latest grant
    PRIMARY KEY (sub, client_id)
);
-- ON DELETE CASCADE from clients must find a client's consents without scanning the table
-- (the primary key leads with sub).
CREATE INDEX consents_client_id ON consents (client_id);
