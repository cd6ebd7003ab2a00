"""ClientStore and UserStore contracts: memory and Postgres."""

from __future__ import annotations

from dataclasses import replace

from tests.contract.backends import NOW, Stores
from tokensvc.grants.rotation import Rejected, rotate
from tokensvc.models import Client, Grant, RefreshState, Successor, User
from tokensvc.opaque import hash_secret, lookup_hash


def a_client(client_id: str = "client-1", created_at: float = NOW, **changes: object) -> Client:
    fields: dict[str, object] = {
        "client_id": client_id,
        "name": f"App {client_id}",
        "auth_method": "client_secret_basic",
        "grant_types": frozenset({"authorization_code", "refresh_token"}),
        "redirect_uris": ("https://app.example/cb", "https://app.example/alt"),
        "scopes": frozenset({"openid", "email", "profile"}),
        "secret_hash": hash_secret("s3cret-value"),
        "created_at": created_at,
    }
    fields.update(changes)
    return Client(**fields)  # type: ignore[arg-type]


def a_user(sub: str = "sub-1", username: str = "alice") -> User:
    return User(
        sub=sub,
        username=username,
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        email=f"{username}@example.com",
        name=username.title(),
        email_verified=True,
    )


# --------------------------------------------------------------------------- clients


async def test_client_add_then_get_round_trips(stores: Stores) -> None:
    client = a_client()
    assert await stores.clients.add(client) is True
    assert await stores.clients.get("client-1") == client


async def test_public_client_without_secret_round_trips(stores: Stores) -> None:
    client = a_client("spa", auth_method="none", secret_hash=None, redirect_uris=())
    assert await stores.clients.add(client) is True
    stored = await stores.clients.get("spa")
    assert stored == client
    assert stored is not None and stored.public


async def test_client_require_consent_round_trips(stores: Stores) -> None:
    third_party = a_client("third-party", require_consent=True)
    first_party = a_client("first-party", created_at=NOW + 1)
    assert first_party.require_consent is False  # the default
    assert await stores.clients.add(third_party) is True
    assert await stores.clients.add(first_party) is True
    assert await stores.clients.get("third-party") == third_party
    assert await stores.clients.get("first-party") == first_party
    assert await stores.clients.list() == [third_party, first_party]


async def test_client_get_unknown_is_none(stores: Stores) -> None:
    assert await stores.clients.get("nobody") is None


async def test_client_duplicate_id_is_refused_and_keeps_the_first(stores: Stores) -> None:
    first = a_client(name="first")
    assert await stores.clients.add(first) is True
    assert await stores.clients.add(a_client(name="second")) is False
    assert await stores.clients.get("client-1") == first


async def test_client_list_is_ordered_by_creation(stores: Stores) -> None:
    later = a_client("b-later", created_at=NOW + 10)
    earlier = a_client("z-earlier", created_at=NOW)
    assert await stores.clients.list() == []
    await stores.clients.add(later)
    await stores.clients.add(earlier)
    assert await stores.clients.list() == [earlier, later]


async def test_client_remove(stores: Stores) -> None:
    await stores.clients.add(a_client())
    assert await stores.clients.remove("client-1") is True
    assert await stores.clients.get("client-1") is None
    assert await stores.clients.list() == []
    assert await stores.clients.remove("client-1") is False


async def test_client_remove_ends_its_grants_and_tokens(stores: Stores) -> None:
    await stores.clients.add(a_client("doomed"))
    await stores.clients.add(a_client("kept"))
    doomed = Grant("g-doomed", "doomed", "sub-1", "openid", int(NOW))
    kept = Grant("g-kept", "kept", "sub-1", "openid", int(NOW))
    assert await stores.grants.issue(doomed, lookup_hash("rt-doomed"), NOW + 3600, NOW)
    assert await stores.grants.issue(kept, lookup_hash("rt-kept"), NOW + 3600, NOW)

    assert await stores.clients.remove("doomed") is True

    assert await stores.count_tokens("g-doomed") == 0
    assert await stores.count_tokens("g-kept") == 1

    def never(_: RefreshState) -> Successor:
        raise AssertionError("a removed client's token must not reach the successor factory")

    outcome = await rotate(stores.grants, lookup_hash("rt-doomed"), NOW + 1, 5, never)
    assert outcome == Rejected()


async def test_client_ping(stores: Stores) -> None:
    assert await stores.clients.ping() is None


# --------------------------------------------------------------------------- users


async def test_user_add_then_lookups(stores: Stores) -> None:
    user = a_user()
    assert await stores.users.add(user) is True
    assert await stores.users.by_username("alice") == user
    assert await stores.users.by_sub("sub-1") == user


async def test_user_unknown_is_none(stores: Stores) -> None:
    assert await stores.users.by_username("nobody") is None
    assert await stores.users.by_sub("nobody") is None


async def test_user_duplicate_username_is_refused(stores: Stores) -> None:
    first = a_user("sub-1", "alice")
    assert await stores.users.add(first) is True
    assert await stores.users.add(a_user("sub-2", "alice")) is False
    assert await stores.users.by_username("alice") == first
    assert await stores.users.by_sub("sub-2") is None


async def test_user_duplicate_sub_is_refused(stores: Stores) -> None:
    first = a_user("sub-1", "alice")
    assert await stores.users.add(first) is True
    assert await stores.users.add(a_user("sub-1", "bob")) is False
    assert await stores.users.by_sub("sub-1") == first
    assert await stores.users.by_username("bob") is None


async def test_user_minimal_fields_round_trip(stores: Stores) -> None:
    user = User(sub="sub-min", username="min", password_hash="$argon2id$x")
    assert await stores.users.add(user) is True
    assert await stores.users.by_sub("sub-min") == user


async def test_user_ping(stores: Stores) -> None:
    assert await stores.users.ping() is None


async def test_replace_stores_everything_but_the_id_and_registration_time(stores: Stores) -> None:
    old = a_client("c1")
    assert await stores.clients.add(old)
    new = a_client(
        "c1",
        created_at=NOW + 500,  # ignored: a replacement keeps when the client was registered
        name="Renamed",
        scopes=frozenset({"openid"}),
        secret_hash=hash_secret("new-secret"),
        previous_secret_hash=old.secret_hash,
        previous_secret_expires_at=NOW + 60,
        post_logout_redirect_uris=("https://app.example/bye",),
        backchannel_logout_uri="https://app.example/backchannel",
        dpop_bound=True,
    )
    assert await stores.clients.replace(new) is True
    stored = await stores.clients.get("c1")
    assert stored == replace(new, created_at=NOW)


async def test_replace_of_an_unknown_client_writes_nothing(stores: Stores) -> None:
    assert await stores.clients.replace(a_client("ghost")) is False
    assert await stores.clients.get("ghost") is None
    assert await stores.clients.list() == []
