"""`GET /authorize` under hostile query strings (RFC 6749 §4.1.2.1, RFC 9700 §4.11): random,
repeated or missing parameters, unregistered and look-alike redirect URIs, broken escapes,
with and without a signed-in session.

An error goes back to the client only at its registered redirect_uri (with `error`, `state`
and `iss`); an unknown client or unregistered redirect_uri gets an HTML error page and never
a redirect; nothing is a 5xx. A code the front-end hands out is one the token endpoint
redeems, whatever state, nonce or scope rode along."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from hypothesis import given
from yarl import URL

from tests.fuzz.conftest import fuzz
from tests.fuzz.expect import AUTHORIZE_ERRORS, page_reply, redirect_params
from tests.fuzz.stack import PASSWORD, Party, Stack, World
from tests.fuzz.strategies import NUMBER_LOOKALIKES, Hostile, Reply, authorize_requests, send
from tests.login_harness import Login

MAX_LINE = 8190 - len("GET  HTTP/1.1")  # aiohttp's max_line_size, for the request line


async def _signed_in_cookie(login: Login, world: World) -> str:
    """The Cookie header of a browser that has signed in (one argon2 check, once)."""
    browser, form = await login.authorize(world.parties["basic"].client)
    done = await browser.sign_in(form, world.username, PASSWORD)
    assert done.status == 302, done.text
    jar = browser.http.cookie_jar
    return "; ".join(f"{c.key}={c.value}" for c in jar)


def _registered(world: World, request: Hostile) -> tuple[Party, str] | None:
    """The client and redirect URI the request names, if it names exactly one of each and
    the URI is registered for the client (the query decoded as the server decodes it)."""
    query = URL("http://x" + request.path, encoded=True).query
    ids, uris = query.getall("client_id", []), query.getall("redirect_uri", [])
    if len(ids) != 1 or len(uris) != 1:
        return None
    party = next((p for p in world.parties.values() if p.client_id == ids[0]), None)
    if party is None or uris[0] not in party.client.redirect_uris:
        return None
    return party, uris[0]


def _check_redirect(
    reply: Reply, request: Hostile, world: World, named: tuple[Party, str] | None
) -> str | None:
    """A redirect goes to the registered URI, keeps its query, carries `iss`, the request's
    `state` and either a code or an error. Returns the code, if any."""
    assert named is not None, ("redirected for an unregistered client or URI", request, reply)
    _, redirect_uri = named
    location = urlsplit(reply.headers["Location"])
    registered = urlsplit(redirect_uri)
    assert location[:3] == registered[:3] and not location.fragment, (location, request)
    own = parse_qsl(registered.query, keep_blank_values=True)
    assert parse_qsl(location.query, keep_blank_values=True)[: len(own)] == own, location
    params = redirect_params(reply.headers["Location"])
    assert params["iss"] == [world.issuer], params
    states = URL("http://x" + request.path, encoded=True).query.getall("state", [])
    if len(states) == 1 and states[0]:
        assert params["state"] == states, (params, states)
    assert ("code" in params) != ("error" in params), params
    if "error" in params:
        assert params["error"][0] in AUTHORIZE_ERRORS, params
        return None
    return params["code"][0]


def test_authorize_never_redirects_off_the_registered_uri(login_stack: Stack) -> None:
    stack, h, login = login_stack, login_stack.harness, login_stack.login
    assert login is not None
    cookie = stack.run(_signed_in_cookie(login, stack.world))
    verifiers = {c: v for v, c in stack.world.pkce}

    async def exchange(party: Party, redirect_uri: str, request: Hostile, code: str) -> None:
        h.remember(code)
        query = URL("http://x" + request.path, encoded=True).query
        verifier = verifiers.get(query.get("code_challenge", ""))
        reply = await h.token(
            party.client,
            party.secret,
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            **({"code_verifier": verifier} if verifier else {}),
        )
        assert reply.status == 200, (request, reply)

    @fuzz(examples=200)
    @given(request=authorize_requests(stack.world, (cookie,)))
    def probe(request: Hostile) -> None:
        reply = stack.run(send(h.http, login.url, request))
        if len(request.path) > MAX_LINE:  # refused by the HTTP parser itself: test_limits
            assert reply.status == 400, (request, reply)
            return
        named = _registered(stack.world, request)
        if reply.status == 302:
            code = _check_redirect(reply, request, stack.world, named)
            if code is not None:
                assert named is not None
                stack.run(exchange(*named, request, code))
            return
        page_reply(reply)
        if named is None and request.method in ("GET", "HEAD"):
            assert reply.status == 400, (request, reply)

    probe()


def test_a_max_age_that_is_not_ascii_digits_is_invalid_request(login_stack: Stack) -> None:
    """OIDC Core §3.1.2.1: max_age is a number of seconds, written in ASCII digits. Anything
    `int()` would take or choke on otherwise is an error at the registered redirect URI."""
    stack, login = login_stack, login_stack.login
    assert login is not None
    party = stack.world.parties["basic"]
    for raw in NUMBER_LOOKALIKES:
        params = {**login.authorize_params(party.client), "max_age": raw}
        reply = stack.run(send(stack.harness.http, login.url, _authorize(params)))
        assert reply.status == 302, (raw, reply)
        assert redirect_params(reply.headers["Location"])["error"] == ["invalid_request"], raw


def _authorize(params: dict[str, str]) -> Hostile:
    return Hostile("GET", "/authorize?" + urlencode(params), (), b"")
