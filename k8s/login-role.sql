-- The login front-end's own Postgres role (docs/security.md, "Compromised login front-end"):
-- it reads users and keeps consents, nothing else. Run once per database as its owner, after
-- `tokensvc migrate`, then give the role a password (ALTER ROLE tokensvc_login PASSWORD '...')
-- and put its URL in Secret tokensvc-login-secrets. tests/e2e/test_login_service.py signs a
-- person in through a front-end that holds only this role.
DO $$
BEGIN
    CREATE ROLE tokensvc_login LOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
GRANT SELECT ON users, schema_migrations TO tokensvc_login;
GRANT SELECT, INSERT, UPDATE, DELETE ON consents TO tokensvc_login;
