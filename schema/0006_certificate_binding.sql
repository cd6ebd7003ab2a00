-- 0006_certificate_binding: refresh tokens of public clients bound to a client certificate
-- (RFC 8705 §4).
--
-- Applied by `tokensvc migrate` after 0005_workload_identity, in one transaction. Never edit an
-- applied migration: add 0007_*.sql instead.

-- The `x5t#S256` (base64url SHA-256 of the DER certificate, RFC 8705 §3.1) of the certificate
-- a public client presented when the grant was issued: every refresh of the grant's tokens
-- must present that certificate again. NULL (every existing grant, confidential clients, and
-- public clients that presented none): not bound. A thumbprint, not a certificate: nothing
-- here can authenticate anyone. A nullable column without a default rewrites nothing, and the
-- CHECK is NOT VALID (every existing row is NULL), so no scan holds the table's lock either.
ALTER TABLE grants
    ADD COLUMN cnf_x5t text,
    ADD CONSTRAINT grants_cnf_x5t_thumbprint
        CHECK (cnf_x5t IS NULL OR length(cnf_x5t) = 43) NOT VALID;
