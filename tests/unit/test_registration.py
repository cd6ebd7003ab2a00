"""`new_client` / `new_user` / `new_federation` / `new_resource`: what may be registered, and
how credentials are kept."""

from __future__ import annotations

import itertools

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from tokensvc.models import Credentials
from tokensvc.opaque import verify_secret
from tokensvc.registration import (
    DEFAULT_USER_SCOPES,
    RegistrationError,
    check_redirect_uri,
    new_client,
    new_federation,
    new_resource,
    new_user,
)
from tokensvc.scope import PERSON_SCOPES

CB = "https://app.example.com/cb"


def rejected(**kwargs: object) -> str:
    kwargs.setdefault("name", "App")
    with pytest.raises(RegistrationError) as info:
        new_client(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------- clients


def test_confidential_client_gets_a_secret_stored_only_hashed() -> None:
    client, secret = new_client(
        name="  Billing  ",
        grant_types=["client_credentials"],
        scope_list=["api:read api:write"],
        clock=lambda: 1234.5,
    )
    assert secret is not None and len(secret) >= 43  # 256 bits, base64url
    assert client.name == "Billing"
    assert client.auth_method == "client_secret_basic"
    assert not client.public
    assert client.grant_types == frozenset({"client_credentials"})
    assert client.scopes == frozenset({"api:read", "api:write"})
    assert client.created_at == 1234.5
    assert client.secret_hash is not None
    assert secret not in client.secret_hash
    assert secret not in repr(client)
    assert verify_secret(secret, client.secret_hash)
    assert not verify_secret(secret + "x", client.secret_hash)
    assert not verify_secret(secret[:-1], client.secret_hash)


def test_secrets_and_ids_are_unique_and_hashes_salted() -> None:
    made = [new_client(name="A", grant_types=["client_credentials"]) for _ in range(5)]
    assert len({c.client_id for c, _ in made}) == 5
    assert len({s for _, s in made}) == 5
    for (client, secret), (other, _) in itertools.pairwise(made):
        assert client.secret_hash != other.secret_hash
        assert secret is not None and other.secret_hash is not None
        assert not verify_secret(secret, other.secret_hash)


def test_same_secret_hashes_differently_with_a_different_salt() -> None:
    draws = iter([b"\x01" * 16, b"\x02" * 32, b"\x03" * 16])  # client_id, secret, salt

    def entropy(n: int) -> bytes:
        return next(draws)[:n]

    first, secret = new_client(name="A", grant_types=["client_credentials"], entropy=entropy)
    draws = iter([b"\x01" * 16, b"\x02" * 32, b"\x04" * 16])
    second, again = new_client(name="A", grant_types=["client_credentials"], entropy=entropy)
    assert secret == again
    assert first.secret_hash != second.secret_hash
    assert secret is not None and second.secret_hash is not None
    assert verify_secret(secret, second.secret_hash)


def test_verify_secret_rejects_garbage_hashes() -> None:
    assert not verify_secret("s", "")
    assert not verify_secret("s", "plain-text-secret")
    assert not verify_secret("s", "md5$abc$def")
    assert not verify_secret("s", "hmac-sha256$!!$??")


def test_client_secret_post_is_kept() -> None:
    client, secret = new_client(
        name="App", grant_types=["client_credentials"], auth_method="client_secret_post"
    )
    assert client.auth_method == "client_secret_post"
    assert secret is not None


def test_public_client_has_no_secret() -> None:
    client, secret = new_client(
        name="SPA",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[CB],
        public=True,
    )
    assert secret is None
    assert client.secret_hash is None
    assert client.public and client.auth_method == "none"
    assert client.redirect_uris == (CB,)


def test_user_facing_client_defaults_to_openid_scopes() -> None:
    client, _ = new_client(name="App", grant_types=["authorization_code"], redirect_uris=[CB])
    assert client.scopes == frozenset(DEFAULT_USER_SCOPES)


def test_machine_client_gets_no_default_scopes() -> None:
    client, _ = new_client(name="App", grant_types=["client_credentials"])
    assert client.scopes == frozenset()


def test_duplicate_redirect_uris_collapse_in_order() -> None:
    other = "https://app.example.com/other"
    client, _ = new_client(
        name="App", grant_types=["authorization_code"], redirect_uris=[CB, other, CB]
    )
    assert client.redirect_uris == (CB, other)


def test_unknown_grant_type() -> None:
    assert "'implicit'" in rejected(grant_types=["implicit"])


def test_no_grant_type() -> None:
    assert "grant-type" in rejected(grant_types=[])


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name(name: str) -> None:
    assert "--name" in rejected(name=name, grant_types=["client_credentials"])


def test_public_client_cannot_use_client_credentials() -> None:
    assert "client_credentials" in rejected(grant_types=["client_credentials"], public=True)


def test_auth_method_none_cannot_use_client_credentials() -> None:
    rejected(grant_types=["client_credentials"], auth_method="none")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_public_client_must_authenticate_with_none(method: str) -> None:
    assert "none" in rejected(
        grant_types=["authorization_code"], redirect_uris=[CB], public=True, auth_method=method
    )


@pytest.mark.parametrize("method", ["private_key_jwt", "tls_client_auth", "basic"])
def test_unknown_auth_method(method: str) -> None:
    assert "--auth-method" in rejected(grant_types=["client_credentials"], auth_method=method)


def test_authorization_code_needs_a_redirect_uri() -> None:
    assert "--redirect-uri" in rejected(grant_types=["authorization_code"])


@pytest.mark.parametrize("scope", ['api"read', "api\\read", "caf\u00e9"])
def test_scope_with_forbidden_characters(scope: str) -> None:
    assert "--scope" in rejected(grant_types=["client_credentials"], scope_list=[scope])


# --------------------------------------------------------------------------- redirect URIs


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example.com/cb",  # http off loopback (RFC 9700 §2.6)
        "http://localhost.evil.example/cb",
        "HTTP://app.example.com/cb",
        "https://app.example.com/cb#fragment",  # RFC 6749 §3.1.2
        "https://app.example.com/cb#",
        "/relative/cb",
        "app.example.com/cb",
        "https:///cb",
        "myapp://cb",  # custom schemes must be reverse domain names (RFC 8252 §7.1)
        "http://[::1",
        "https://app.example.com:port/cb",
        "https://app.example.com:99999/cb",
    ],
)
def test_bad_redirect_uris(uri: str) -> None:
    with pytest.raises(RegistrationError):
        check_redirect_uri(uri)
    rejected(grant_types=["authorization_code"], redirect_uris=[uri])


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "https://app.example.com:8443/cb?tenant=a",
        "http://127.0.0.1:5000/cb",
        "http://localhost/cb",
        "http://[::1]:8000/cb",
        "com.example.app:/oauth2redirect",
    ],
)
def test_good_redirect_uris(uri: str) -> None:
    assert check_redirect_uri(uri) == uri
    client, _ = new_client(name="App", grant_types=["authorization_code"], redirect_uris=[uri])
    assert client.redirect_uris == (uri,)


# --------------------------------------------------------------------------- users


def test_user_password_is_an_argon2id_hash() -> None:
    password = "correct horse battery staple"
    user = new_user(username="alice", password=password, email="a@example.com", name="Alice")
    assert user.password_hash.startswith("$argon2id$")
    assert password not in user.password_hash
    assert password not in repr(user)
    assert PasswordHasher().verify(user.password_hash, password)
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(user.password_hash, password + "!")
    assert (user.username, user.email, user.name) == ("alice", "a@example.com", "Alice")
    assert len(user.sub) >= 22  # 128 bits, base64url


def test_users_get_distinct_subjects_and_salts() -> None:
    a = new_user(username="a", password="password-1")
    b = new_user(username="b", password="password-1")
    assert a.sub != b.sub
    assert a.password_hash != b.password_hash


@pytest.mark.parametrize("username", ["", "  ", "al ice", "tab\there"])
def test_bad_username(username: str) -> None:
    with pytest.raises(RegistrationError, match="--username"):
        new_user(username=username, password="long enough password")


def test_short_password() -> None:
    with pytest.raises(RegistrationError, match="8 characters"):
        new_user(username="bob", password="short")


def test_client_ids_are_safe_as_command_line_arguments() -> None:
    """base64url ids start with "-" one time in 64, and argparse then takes them for an
    option (`tokensvc client remove -abc` failed); hex ids never do."""
    for _ in range(300):
        client, _ = new_client(name="x", grant_types=["client_credentials"])
        assert client.client_id[0].isalnum() and len(client.client_id) == 32


# --------------------------------------------------------------------------- without a secret

PUBLIC = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "kid": "k1",
}
MACHINE = {"grant_types": ["client_credentials"]}


@pytest.mark.parametrize(
    ("method", "credentials"),
    [
        ("private_key_jwt", Credentials(jwks={"keys": [PUBLIC]})),
        ("private_key_jwt", Credentials(jwks_uri="https://app.example.com/jwks")),
        ("private_key_jwt", Credentials(jwks_uri="http://127.0.0.1:9999/jwks")),
        ("self_signed_tls_client_auth", Credentials(jwks={"keys": [PUBLIC]})),
        (
            "federated_jwt",
            Credentials(
                federated_issuer="https://kubernetes.default.svc",
                federated_subject="system:serviceaccount:payments:*",
            ),
        ),
        ("tls_client_auth", Credentials(tls_subject_dn="CN=payments,O=Example")),
        ("tls_client_auth", Credentials(tls_san_dns="payments.internal")),
        ("tls_client_auth", Credentials(tls_san_uri="spiffe://example.org/ns/p/sa/api")),
    ],
)
def test_methods_without_a_secret_register_their_binding(
    method: str, credentials: Credentials
) -> None:
    client, secret = new_client(name="svc", auth_method=method, credentials=credentials, **MACHINE)
    assert secret is None and client.secret_hash is None
    assert client.auth_method == method and client.credentials == credentials
    assert not client.public


@pytest.mark.parametrize(
    ("method", "credentials", "says"),
    [
        ("private_key_jwt", Credentials(), "needs exactly one of --jwks-file or --jwks-uri"),
        (
            "private_key_jwt",
            Credentials(jwks={"keys": [PUBLIC]}, jwks_uri="https://a.example/j"),
            "exactly one",
        ),
        ("private_key_jwt", Credentials(jwks={"keys": [{**PUBLIC, "d": "x"}]}), "private key"),
        ("private_key_jwt", Credentials(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), "oct"),
        ("private_key_jwt", Credentials(jwks={"keys": []}), "1 to 20 keys"),
        ("private_key_jwt", Credentials(jwks={"nokeys": 1}), '"keys" array'),
        ("private_key_jwt", Credentials(jwks={"keys": [{**PUBLIC, "alg": "HS256"}]}), "alg"),
        ("private_key_jwt", Credentials(jwks={"keys": [PUBLIC, PUBLIC]}), "unique"),
        ("private_key_jwt", Credentials(jwks_uri="http://keys.example/jwks"), "https"),
        ("private_key_jwt", Credentials(jwks_uri="https://u:p@keys.example/j"), "credentials"),
        ("federated_jwt", Credentials(federated_issuer="https://k8s.example"), "subject"),
        (
            "federated_jwt",
            Credentials(federated_issuer="https://k8s.example", federated_subject=" "),
            "non-empty",
        ),
        ("tls_client_auth", Credentials(), "exactly one of --tls-subject-dn"),
        (
            "tls_client_auth",
            Credentials(tls_san_dns="a.example", tls_san_uri="spiffe://x/y"),
            "exactly one",
        ),
        ("tls_client_auth", Credentials(tls_san_uri="no-scheme"), "absolute URI"),
        ("client_secret_basic", Credentials(jwks_uri="https://a.example/j"), "does not apply"),
        ("none", Credentials(tls_san_dns="a.example"), "does not apply"),
    ],
)
def test_a_binding_that_does_not_fit_the_method_is_refused(
    method: str, credentials: Credentials, says: str
) -> None:
    grants = MACHINE if method != "none" else {"grant_types": ["authorization_code"]}
    extra = {"redirect_uris": [CB]} if method == "none" else {}
    assert says in rejected(auth_method=method, credentials=credentials, **grants, **extra)


def test_client_secret_jwt_is_refused_with_the_reason() -> None:
    message = rejected(auth_method="client_secret_jwt", **MACHINE)
    assert "stored only as keyed hashes" in message and "private_key_jwt" in message


def test_a_federation_has_one_key_source_and_a_https_issuer() -> None:
    federation = new_federation(issuer="https://kubernetes.default.svc", jwks={"keys": [PUBLIC]})
    assert federation.jwks == {"keys": [PUBLIC]} and federation.jwks_uri is None
    for kwargs, says in (
        ({"issuer": "https://a.example"}, "exactly one"),
        (
            {
                "issuer": "https://a.example",
                "jwks": {"keys": [PUBLIC]},
                "jwks_uri": "https://a.example/j",
            },
            "exactly one",
        ),
        ({"issuer": "http://a.example", "jwks_uri": "https://a.example/j"}, "https"),
        ({"issuer": "https://a.example", "jwks": {"keys": [{**PUBLIC, "d": "x"}]}}, "private"),
    ):
        with pytest.raises(RegistrationError, match=says):
            new_federation(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- resources (RFC 8707)

API = "https://api.example.com"


def resource_refused(**kwargs: object) -> str:
    kwargs.setdefault("identifier", API)
    kwargs.setdefault("scopes", ["orders:read"])
    with pytest.raises(RegistrationError) as info:
        new_resource(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_a_resource_keeps_its_identifier_exactly_and_its_scopes() -> None:
    resource = new_resource(
        identifier="https://API.example.com/v1?tenant=a",  # RFC 8707 §2 allows a query
        scopes=["orders:read orders:write", "orders:read"],
        name="  Orders  ",
        access_token_ttl=300,
        clock=lambda: 1234.5,
    )
    assert resource.identifier == "https://API.example.com/v1?tenant=a"
    assert resource.scopes == frozenset({"orders:read", "orders:write"})
    assert (resource.name, resource.access_token_ttl, resource.created_at) == (
        "Orders",
        300,
        1234.5,
    )
    bare = new_resource(identifier=API, scopes=["orders:read"])
    assert (bare.name, bare.access_token_ttl) == (None, None)


@pytest.mark.parametrize(
    "identifier",
    [
        API,
        "https://api.example.com:8443/orders/",
        "http://127.0.0.1:9000",
        "spiffe://example.org/ns/payments/sa/api",
        "urn:example:billing",
        "URN:ietf:params:oauth:some-api",
        "https://[2001:db8::1]/api",
        "https://api.example.com/" + "a" * (2048 - len("https://api.example.com/")),
    ],
)
def test_good_resource_identifiers(identifier: str) -> None:
    assert new_resource(identifier=identifier, scopes=["api"]).identifier == identifier
    client, _ = new_client(name="svc", grant_types=["client_credentials"], resources=[identifier])
    assert client.resources == (identifier,)


@pytest.mark.parametrize(
    ("identifier", "says"),
    [
        ("https://api.example.com/#", "fragment"),  # RFC 8707 §2
        ("https://api.example.com/orders#v1", "fragment"),
        ("/orders", "absolute URI"),
        ("api.example.com", "absolute URI"),
        ("//api.example.com", "absolute URI"),
        ("https:///orders", "absolute URI"),
        ("mailto:api@example.com", "absolute URI"),
        ("urn:x:api", "absolute URI"),  # a namespace identifier has 2 to 32 characters
        ("urn:example", "absolute URI"),
        ("", "absolute URI"),
        ("https://api.example.com:port", "malformed"),
        ("https://api.example.com:99999", "malformed"),
        ("https://[::1/api", "malformed"),
        ("https://api.example.com/\norders", "control characters"),
        ("https://api.example.com/\x00", "control characters"),
        ("https://api.example.com/\x7f", "control characters"),
        ("https://api.example.com/a b", "cannot hold"),
        ("https://api.example.com/caf\u00e9", "cannot hold"),
        ('https://api.example.com/"x"', "cannot hold"),
        ("https://api.example.com/" + "a" * 2048, "2048"),
    ],
)
def test_bad_resource_identifiers(identifier: str, says: str) -> None:
    assert says in resource_refused(identifier=identifier)
    assert "--identifier" in resource_refused(identifier=identifier)
    message = rejected(grant_types=["client_credentials"], resources=[API, identifier])
    assert says in message and "--resource" in message


def test_a_resource_needs_a_scope() -> None:
    assert "at least one --scope" in resource_refused(scopes=[])
    assert "at least one --scope" in resource_refused(scopes=["  "])


@pytest.mark.parametrize("scope", ['orders"read', "orders\\read", "caf\u00e9"])
def test_resource_scopes_are_scope_tokens(scope: str) -> None:
    assert "RFC 6749 §3.3" in resource_refused(scopes=["orders:read", scope])


@pytest.mark.parametrize("scope", sorted(PERSON_SCOPES))
def test_the_issuers_scopes_belong_to_no_resource(scope: str) -> None:
    assert f"--scope {scope} is the issuer's" in resource_refused(scopes=["orders:read", scope])


@pytest.mark.parametrize("ttl", [0, -1, 86_401, True, 1.5, "300"])
def test_resource_token_ttl_is_1_to_86400_whole_seconds(ttl: object) -> None:
    assert "--access-token-ttl" in resource_refused(access_token_ttl=ttl)


def test_resource_token_ttl_bounds_are_inclusive() -> None:
    for ttl in (1, 86_400):
        assert new_resource(identifier=API, scopes=["a"], access_token_ttl=ttl).access_token_ttl


@pytest.mark.parametrize("name", ["", "   ", "Orders\x00"])
def test_resource_name_is_a_name(name: str) -> None:
    assert "--name" in resource_refused(name=name)


def test_client_resources_collapse_in_order() -> None:
    other = "urn:example:billing"
    client, _ = new_client(
        name="svc", grant_types=["client_credentials"], resources=[other, API, other]
    )
    assert client.resources == (other, API)
    plain, _ = new_client(name="svc", grant_types=["client_credentials"])
    assert plain.resources == ()
