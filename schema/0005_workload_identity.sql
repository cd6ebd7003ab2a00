-- 0005_workload_identity: clients that authenticate with keys, workload tokens or
-- certificates (RFC 7523 §2.2, RFC 8705 §2), and the federation issuers they may rely on.
--
-- Applied by `tokensvc migrate` after 0004_purge_indexes, in one transaction. Never edit an
-- applied migration: add 0006_*.sql instead. No column here holds a secret: the keys are
-- public keys, and certificates are matched by their names.

ALTER TABLE clients DROP CONSTRAINT clients_auth_method_check;
ALTER TABLE clients
    ADD CONSTRAINT clients_auth_method_check CHECK (auth_method IN (
        'client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt',
        'federated_jwt', 'tls_client_auth', 'self_signed_tls_client_auth')),
    -- private_key_jwt, self_signed_tls_client_auth: a public JWKS, or where to fetch one.
    ADD COLUMN jwks jsonb,
    ADD COLUMN jwks_uri text,
    ADD CONSTRAINT clients_one_key_source CHECK (jwks IS NULL OR jwks_uri IS NULL),
    -- federated_jwt: the trusted issuer and the subject (exact or a pattern) of its tokens.
    ADD COLUMN federated_issuer text,
    ADD COLUMN federated_subject text,
    ADD CONSTRAINT clients_federated_pair
        CHECK ((federated_issuer IS NULL) = (federated_subject IS NULL)),
    -- tls_client_auth: the one name the client's certificate must carry.
    ADD COLUMN tls_subject_dn text,
    ADD COLUMN tls_san_dns text,
    ADD COLUMN tls_san_uri text,
    ADD CONSTRAINT clients_one_tls_name CHECK (
        (tls_subject_dn IS NOT NULL)::int + (tls_san_dns IS NOT NULL)::int
        + (tls_san_uri IS NOT NULL)::int <= 1);

-- Trusted issuers of workload tokens (`tokensvc federation add`): a Kubernetes service-account
-- issuer, a SPIRE OIDC discovery provider, a CI system. A client's federated_issuer names one;
-- removing a federation leaves such clients unable to authenticate until it is added again.
CREATE TABLE federations (
    issuer     text PRIMARY KEY,
    jwks       jsonb,
    jwks_uri   text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT federations_one_key_source CHECK ((jwks IS NULL) <> (jwks_uri IS NULL))
);
