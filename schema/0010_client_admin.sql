-- 0010_client_admin: what the admin API manages beyond the first edition's clients (README,
-- *Managing clients with the admin API*).
--
-- Applied by `tokensvc migrate` after 0009_change_feed, in one transaction. Never edit an
-- applied migration: add 0011_*.sql instead.

-- Secret rotation with an overlap (`POST /admin/clients/{id}/secret`): the replaced secret's
-- keyed hash keeps authenticating until `previous_secret_expires_at`, so a rollout can move
-- every instance of the client to the new secret without a failed request. Both NULL, or
-- both set. Nullable columns without defaults: neither ALTER rewrites the table.
ALTER TABLE clients
    ADD COLUMN previous_secret_hash text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD CONSTRAINT clients_previous_secret_whole
        CHECK ((previous_secret_hash IS NULL) = (previous_secret_expires_at IS NULL));

-- OIDC RP-Initiated Logout 1.0 §3.1 `post_logout_redirect_uris` and Back-Channel Logout 1.0
-- §2.2 `backchannel_logout_uri`: registered now, used by logout. A constant default is kept
-- in the catalog (Postgres 11+): no rewrite.
ALTER TABLE clients
    ADD COLUMN post_logout_redirect_uris text[] NOT NULL DEFAULT '{}',
    ADD COLUMN backchannel_logout_uri text;

-- `GET /admin/users/{sub}/grants`: a person's live grants, found without a scan of every
-- grant. Partial: revoked grants and tombstones (sub NULL) stay out of it.
CREATE INDEX grants_sub_live ON grants (sub, created_at) WHERE revoked_at IS NULL;
