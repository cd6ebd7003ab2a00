-- 0001_initial: clients, users, grants and their rotating refresh-token families.
--
-- Applied by `tokensvc migrate` (tokensvc/storage/migrate.py) in one transaction, recorded in
-- schema_migrations. Never edit an applied migration: add 0002_*.sql instead.
--
-- No column holds a raw credential. Client secrets are salted HMAC-SHA256 hashes
-- (tokensvc.opaque.hash_secret), passwords argon2id hashes, refresh tokens only their SHA-256
-- (tokensvc.opaque.lookup_hash), and the one thing kept about a successor token is a box sealed
-- under a key derived from its predecessor, which this database never sees. Authorization codes
-- live in Redis, not here.
--
-- Times are timestamptz: the service passes epoch seconds from its own clock and converts them
-- at the storage boundary, so every instant here is unambiguous whatever the session TimeZone.

-- Registered clients (RFC 6749 §2). Read on the hot path through an in-process cache.
CREATE TABLE clients (
    client_id     text PRIMARY KEY,
    name          text NOT NULL,
    -- The one client authentication method this client registered (RFC 6749 §2.3).
    auth_method   text NOT NULL
                  CHECK (auth_method IN ('client_secret_basic', 'client_secret_post', 'none')),
    grant_types   text[] NOT NULL DEFAULT '{}',
    -- An array, not a set: order is kept for display; matching is exact-string (RFC 9700 §2.1).
    redirect_uris text[] NOT NULL DEFAULT '{}',
    scopes        text[] NOT NULL DEFAULT '{}',
    -- "hmac-sha256$<salt>$<digest>"; NULL for public clients, which have no secret.
    secret_hash   text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- People who sign in at the login front-end.
CREATE TABLE users (
    sub            text PRIMARY KEY,          -- OIDC subject: stable, never reassigned
    username       text NOT NULL UNIQUE,      -- UNIQUE makes UserStore.add's "taken" atomic
    password_hash  text NOT NULL,             -- argon2id PHC string
    email          text,
    name           text,
    email_verified boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- What a person authorised a client to do. Every refresh token of one family points here, so
-- revoking the family is one write to `revoked_at`, and no token of it can rotate afterwards.
--
-- client_id, sub, scope and auth_time are nullable ONLY for tombstones: `revoke_grant` may run
-- before `issue` (a code replay racing the code's first exchange, RFC 6749 §4.1.2) and then
-- inserts a bare row with `revoked_at` set. The later `issue` completes that row but never
-- clears `revoked_at`, so the revocation wins. The CHECK keeps every non-revoked grant complete.
-- Rows are never deleted on revocation: they are what reuse detection looks at.
CREATE TABLE grants (
    grant_id   text PRIMARY KEY,
    client_id  text REFERENCES clients ON DELETE CASCADE,  -- removing a client ends its grants
    sub        text,
    scope      text,
    auth_time  bigint,                   -- epoch seconds, as in the ID token's auth_time claim
    acr        text,
    amr        text[],
    sid        text,
    claims     jsonb NOT NULL DEFAULT '{}',  -- user claims released in ID token and /userinfo
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT grants_complete_unless_tombstone CHECK (
        revoked_at IS NOT NULL
        OR (client_id IS NOT NULL AND sub IS NOT NULL AND scope IS NOT NULL
            AND auth_time IS NOT NULL)
    )
);
-- ON DELETE CASCADE from clients must find a client's grants without scanning the table.
CREATE INDEX grants_client_id ON grants (client_id);

-- One row per refresh token ever issued, keyed by its SHA-256. Rotation retires the presented
-- row and inserts its successor in one statement; retired rows stay (with the sealed successor
-- response for grace-window repeats) so that a later presentation is recognised as reuse.
CREATE TABLE refresh_tokens (
    -- 32 bytes exactly: a SHA-256. A raw token (43 base64url characters) cannot slip in.
    token_hash    bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    grant_id      text NOT NULL REFERENCES grants ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    retired_at    timestamptz,            -- set once, by the rotation that consumed this token
    -- AES-GCM box of the successor response, key derived from this row's token (opaque.seal).
    successor_box bytea,
    CONSTRAINT refresh_tokens_box_only_when_retired
        CHECK (successor_box IS NULL OR retired_at IS NOT NULL)
);
-- Family lookups: counting, and the cascade from grants.
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);
