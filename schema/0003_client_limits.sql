-- 0003_client_limits: per-client request rate limits at /token.
--
-- Applied by `tokensvc migrate` after 0002_login, in one transaction. Never edit an applied
-- migration: add 0004_*.sql instead.

-- A token bucket per client (tokensvc.limits.buckets): `rate_limit` requests per second,
-- `rate_burst` requests at once. Both NULL (the default, and every existing client): no limit.
-- Set with `tokensvc client add --rate-limit R [--rate-burst B]`. The buckets themselves live
-- in Redis (or in memory), never here.
ALTER TABLE clients
    -- `< 'Infinity'` also refuses NaN, which Postgres sorts above every number.
    ADD COLUMN rate_limit double precision CHECK (rate_limit > 0 AND rate_limit < 'Infinity'),
    ADD COLUMN rate_burst integer CHECK (rate_burst >= 1),
    ADD CONSTRAINT clients_rate_limit_with_burst
        CHECK ((rate_limit IS NULL) = (rate_burst IS NULL));
