-- 0012_reuse_access_token: the opt-in machine-token cache (`client add --reuse-access-token`,
-- README *Reusing machine tokens*): a client_credentials request of such a client may get the
-- bearer token last issued for the same scope and audience while at least half its lifetime is
-- left. Off for every existing client.
--
-- Applied by `tokensvc migrate` after 0011_logout, in one transaction. Never edit an applied
-- migration: add 0013_*.sql instead. A constant default is kept in the catalog: no rewrite.
ALTER TABLE clients ADD COLUMN reuse_access_token boolean NOT NULL DEFAULT false;
