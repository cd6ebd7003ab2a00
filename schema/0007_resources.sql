-- 0007_resources: resource servers (RFC 8707 resource indicators) that access tokens can be
-- issued for, the clients allowed each, and the resources a person granted.
--
-- Applied by `tokensvc migrate` after 0006_certificate_binding, in one transaction. Never edit
-- an applied migration: add 0008_*.sql instead.

-- Resource servers (`tokensvc resource add`): the identifier is what a client sends as
-- `resource` and what the token's `aud` becomes, an absolute URI without a fragment (RFC 8707
-- §2); the scopes are those that belong to it (never the issuer's own: openid, profile, ...).
-- `access_token_ttl` caps its tokens' lifetime; NULL: the service's TOKENSVC_ACCESS_TOKEN_TTL.
-- Read on the hot path through an in-process cache, like clients. Removing one stops new
-- tokens for it; clients that name it keep the name and are refused it at /token.
CREATE TABLE resources (
    identifier       text PRIMARY KEY,
    scopes           text[] NOT NULL CHECK (cardinality(scopes) > 0),
    name             text,
    access_token_ttl integer CHECK (access_token_ttl > 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- The resources a client may get tokens for (`tokensvc client add --resource`), and those a
-- person granted at /authorize, which a code exchange or refresh may narrow but never widen
-- (RFC 8707 §2.2). Empty (every existing row): tokens for the issuer only. A constant default
-- is kept in the catalog (Postgres 11+), so neither ALTER rewrites or scans its table: each
-- holds its lock only for the catalog update.
ALTER TABLE clients ADD COLUMN resources text[] NOT NULL DEFAULT '{}';
ALTER TABLE grants ADD COLUMN resources text[] NOT NULL DEFAULT '{}';
