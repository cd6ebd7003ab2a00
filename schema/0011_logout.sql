-- 0011_logout: OIDC Back-Channel Logout 1.0 deliveries (README, *Logout*).
--
-- Applied by `tokensvc migrate` after 0010_client_admin, in one transaction. Never edit an
-- applied migration: add 0012_*.sql instead.

-- A browser session that ended owes each client with a grant in it one logout token. Rows are
-- written by the statement that ends the session's grants (GrantStore.end_session), so a
-- sign-out is never half recorded; a token-service replica leases due rows (FOR UPDATE SKIP
-- LOCKED, next_attempt_at pushed past the lease), posts the token and deletes the row, or
-- pushes it back with the attempt counted. A replica that dies mid-delivery leaves the row to
-- the next after its lease. delivery_id is the logout token's jti (the same on every retry,
-- so a receiver can tell a retry from a replay); one row per client and session.
CREATE TABLE logout_deliveries (
    delivery_id     text PRIMARY KEY,
    client_id       text NOT NULL REFERENCES clients ON DELETE CASCADE,
    sub             text NOT NULL,
    sid             text NOT NULL,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    CONSTRAINT logout_deliveries_once UNIQUE (client_id, sid)
);
CREATE INDEX logout_deliveries_due ON logout_deliveries (next_attempt_at);
