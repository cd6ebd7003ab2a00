-- 0008_dpop_par: DPoP-bound tokens (RFC 9449) and pushed authorization requests (RFC 9126).
--
-- Applied by `tokensvc migrate` after 0007_resources, in one transaction. Never edit an applied
-- migration: add 0009_*.sql instead.

-- `client add --dpop-bound`: every token request of the client must carry a DPoP proof
-- (`dpop_bound_access_tokens`, RFC 9449 §5.2). `client add --require-par`: its authorization
-- requests must be pushed to /par first (RFC 9126 §6). Constant defaults are kept in the
-- catalog (Postgres 11+): neither ALTER rewrites or scans the table.
ALTER TABLE clients ADD COLUMN dpop_bound boolean NOT NULL DEFAULT false;
ALTER TABLE clients ADD COLUMN require_par boolean NOT NULL DEFAULT false;

-- The DPoP key (RFC 7638 thumbprint) a public client's refresh tokens are bound to (RFC 9449
-- §5): each refresh must prove it again. NULL: not bound to a key. Like cnf_x5t (0006), a
-- nullable column without a default: no rewrite.
ALTER TABLE grants ADD COLUMN cnf_jkt text;
