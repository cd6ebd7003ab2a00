"""A peer measured in the same run: what an SRE would run instead of tokensvc.

* `--peer node-oidc-provider` installs node-oidc-provider (npm, PEER_VERSION pinned, into a
  cache directory; Node NODE_VERSION from the npm package `node-linux-<arch>` when the machine's
  node is older than MIN_NODE) and runs benchmarks/peers/node_oidc_provider.mjs: an in-memory
  store, an ES256 key, JWT access tokens, the three grants, pinned to tokensvc's core. Its codes
  are minted ahead of the timed window through the script's own preparation port, its refresh
  tokens by exchanging such codes; each is sent once, as ours are.
* `--peer-url URL` is any other vendor's token endpoint, for `client_credentials` only (nothing
  else can be prepared without the vendor's internals).

Each peer phase is named `peer_<grant>` and runs right after tokensvc's phase of the same grant,
closed loop at the same concurrency, so that the two are measured minutes apart at most.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from benchmarks import spawn
from benchmarks.common import UsageError
from benchmarks.live import Live
from benchmarks.prepare import GRANTS, Client, Issuer, PrepareError

NODE_OIDC_PROVIDER = "node-oidc-provider"
PEER_VERSION = "9.13.3"
NODE_VERSION = "22.23.5"
MIN_NODE = 22
SCRIPT = Path(__file__).with_name("peers") / "node_oidc_provider.mjs"
PREFIX = "peer_"
RESOURCE = "https://bench-api.example"
MINT_BATCH = 1000  # codes per call to the peer's preparation port
INSTALL_TIMEOUT = 600.0
# tokensvc's ratio to node-oidc-provider per grant, closed loop, same core (issue 18)
TARGET_VS_PEER = {"client_credentials": 3.0, "authorization_code": 2.0, "refresh_token": 2.0}


def phase_name(grant: str) -> str:
    return PREFIX + grant


def grant_of(phase: str) -> str | None:
    """The grant a peer phase measures; None for any other phase."""
    return phase.removeprefix(PREFIX) if phase.startswith(PREFIX) else None


# --------------------------------------------------------------------------- installing


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tokensvc-benchmarks" / f"node-oidc-provider-{PEER_VERSION}"


def node_version(binary: str) -> str:
    """What `node --version` prints ("v22.23.5"); "" when it cannot run."""
    try:
        return subprocess.run(  # noqa: S603 - a node binary, --version
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def node_major(binary: str) -> int:
    major = node_version(binary).lstrip("v").split(".")[0]
    return int(major) if major.isdigit() else 0


def _installed_version(where: Path) -> str | None:
    try:
        manifest = json.loads((where / "node_modules/oidc-provider/package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version")
    return version if isinstance(version, str) else None


def install(live: Live) -> tuple[str, Path]:
    """(the node binary, the directory holding node_modules) with node-oidc-provider
    PEER_VERSION installed; npm runs only when something is missing."""
    where = cache_dir()
    system = shutil.which("node")
    use_system = system is not None and node_major(system) >= MIN_NODE
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    bundled = where / "node_modules" / ".bin" / "node"
    wanted = [f"oidc-provider@{PEER_VERSION}"]
    if not use_system:
        if arch is None:
            raise UsageError(f"--peer: no Node {MIN_NODE} package for {platform.machine()}")
        wanted.append(f"node-linux-{arch}@{NODE_VERSION}")
    if _installed_version(where) != PEER_VERSION or (not use_system and not bundled.exists()):
        npm = shutil.which("npm")
        if npm is None:
            raise UsageError("--peer needs npm (apt-get install npm)")
        where.mkdir(parents=True, exist_ok=True)
        (where / "package.json").write_text('{"private": true, "type": "module"}\n')
        live.say(f"installing {' '.join(wanted)} with npm into {where} ...")
        result = subprocess.run(  # noqa: S603 - npm, pinned packages
            [npm, "install", "--no-audit", "--no-fund", "--save-exact", *wanted],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise UsageError(f"npm install {' '.join(wanted)} failed: {result.stderr[-1500:]}")
    node = system if use_system and system else str(bundled)
    return node, where


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Peer:
    """A peer token endpoint and what the kit needs to load it."""

    label: str  # e.g. "node-oidc-provider 9.13.3 (Node v22.23.5)"
    token_url: str
    machine: Client
    web: Client | None = None  # None: client_credentials only (--peer-url)
    prepare_url: str = ""
    keys: KeySet | None = None  # its public keys, to verify what it signs
    pid: int | None = None
    targets: dict[str, float] | None = None  # tokensvc's ratio to it per grant, if set

    @property
    def grants(self) -> tuple[str, ...]:
        return GRANTS if self.web is not None else ("client_credentials",)


@contextmanager
def node_oidc_provider(
    workdir: Path, cores: list[int], live: Live, *, code_ttl: int = 3600
) -> Iterator[Peer]:
    """node-oidc-provider on loopback, pinned to `cores`; stopped on exit."""
    node, where = install(live)
    script = where / SCRIPT.name  # next to its node_modules, where node resolves imports
    shutil.copyfile(SCRIPT, script)
    key = ECKey.generate_key(
        "P-256", parameters={"alg": "ES256", "use": "sig", "kid": "bench-peer"}, private=True
    )
    machine = Client("bench-peer-machine", os.urandom(24).hex())
    web = Client("bench-peer-web", os.urandom(24).hex())
    port, prepare_port = spawn.free_port(), spawn.free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = {
        "port": port,
        "prepare_port": prepare_port,
        "issuer": issuer,
        "jwk": key.as_dict(private=True),
        "machine": {"client_id": machine.client_id, "secret": machine.secret},
        "web": {
            "client_id": web.client_id,
            "secret": web.secret,
            "redirect_uri": web.redirect_uri,
        },
        "resource": RESOURCE,
        "scope": "api:read",
        "person": {"sub": "bench-user", "name": "Bench User", "email": "bench@example.com"},
        # tokensvc's defaults (SPEC: TOKENSVC_ACCESS_TOKEN_TTL, _REFRESH_TOKEN_TTL) and the
        # kit's TOKENSVC_CODE_TTL
        "access_token_ttl": 3600,
        "refresh_token_ttl": 2592000,
        "code_ttl": code_ttl,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "peer.json"
    config_file.touch(mode=0o600)
    config_file.write_text(json.dumps(config))
    env = {**os.environ, "NODE_ENV": "production"}
    errfile = workdir / "peer.err"
    proc = spawn.start([node, str(script), str(config_file)], env, cores, errfile)
    try:
        spawn.wait_ready(
            proc,
            errfile,
            "node-oidc-provider",
            lambda: spawn.listens(port) and spawn.listens(prepare_port),
            "listen",
        )
        version = node_version(node)
        public = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
        yield Peer(
            label=f"{NODE_OIDC_PROVIDER} {PEER_VERSION} (Node {version})",
            token_url=issuer + "/token",
            machine=machine,
            web=web,
            prepare_url=f"http://127.0.0.1:{prepare_port}",
            keys=public,
            pid=proc.pid,
            targets=TARGET_VS_PEER,
        )
    finally:
        spawn.stop_process(proc, timeout=10)


def external(url: str, client: Client) -> Peer:
    """Another vendor's token endpoint (`--peer-url`), for client_credentials."""
    return Peer(label=url, token_url=url, machine=client)


# --------------------------------------------------------------------------- preparing


@dataclass
class PeerIssuer(Issuer):
    """The peer's token endpoint; codes come from its preparation port."""

    prepare_url: str = ""

    async def mint_codes(
        self, client: Client, n: int, http: aiohttp.ClientSession | None = None
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        async with aiohttp.ClientSession() as session:
            while len(out) < n:
                ask = min(MINT_BATCH, n - len(out))
                async with session.post(self.prepare_url + "/codes", json={"n": ask}) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise PrepareError(f"the peer's POST /codes answered {resp.status}: {data}")
                out.extend((str(code), str(verifier)) for code, verifier in data)
        return out


def issuer_of(peer: Peer) -> Issuer:
    if peer.prepare_url:
        return PeerIssuer(peer.token_url, code_ttl=3600, prepare_url=peer.prepare_url)
    return Issuer(peer.token_url)


def verify_tokens(peer: Peer) -> Callable[[str, dict[str, Any]], None]:
    """A sample check: every JWT in the peer's 200 verifies against its public key (ES256)."""

    def check(grant: str, body: dict[str, Any]) -> None:
        if peer.keys is None:
            return
        for name in ("access_token", "id_token"):
            token = body.get(name)
            if token is None:
                continue
            try:
                jws.deserialize_compact(str(token), peer.keys, algorithms=["ES256"])
            except (JoseError, ValueError) as exc:
                raise PrepareError(f"{grant}: the peer's {name} does not verify: {exc}") from exc

    return check
