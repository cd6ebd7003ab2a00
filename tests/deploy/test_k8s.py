"""`k8s/`: every overlay renders, every object passes the Kubernetes API schema (offline, strict),
and the properties a platform team relies on hold in what `kubectl apply -k` would send.

Rendering uses `kubectl kustomize` (the test command makes sure kubectl is installed); schemas
come from the `kubernetes-validate` package, so nothing here needs a cluster or the network.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tokensvc import config

REPO = Path(__file__).resolve().parents[2]
# The variables of SPEC.md's "Configuration" table, kept in the repository (see its header).
SPEC_SETTINGS = Path(__file__).with_name("spec_settings.txt")
SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
RENDERS = ["base", "overlays/dev", "overlays/production"]
KUBERNETES_VERSION = "1.30"  # the oldest minor still supported upstream when this was written
WORKLOADS = ("Deployment", "StatefulSet", "Job")
SERVICES = ("tokensvc-token", "tokensvc-login")
PLACEHOLDER = "CHANGE_ME"

Obj = dict[str, Any]


@dataclass
class Rendered:
    name: str
    objects: list[Obj]

    def of(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.of(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def pod_specs(self) -> Iterator[tuple[str, Obj]]:
        for obj in self.objects:
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            if obj["kind"] in WORKLOADS:
                yield where, obj["spec"]["template"]["spec"]
            elif obj["kind"] == "CronJob":
                yield where, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]

    def containers(self) -> Iterator[tuple[str, Obj]]:
        for where, spec in self.pod_specs():
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                yield f"{where}/{container['name']}", container


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl is missing: ./scripts/test installs it (apt-get install kubectl)"
    return found


@functools.cache
def render(path: str) -> Rendered:
    done = subprocess.run(
        [kubectl(), "kustomize", str(REPO / "k8s" / path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize k8s/{path} failed:\n{done.stderr}"
    return Rendered(path, [o for o in yaml.safe_load_all(done.stdout) if o])


@pytest.fixture(scope="module", params=RENDERS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return render(request.param)


@pytest.fixture(scope="module")
def dev() -> Rendered:
    return render("overlays/dev")


@pytest.fixture(scope="module")
def production() -> Rendered:
    return render("overlays/production")


@functools.cache
def spec_settings() -> frozenset[str]:
    """The variables of SPEC.md's "Configuration" table, as `spec_settings.txt` lists them."""
    lines = SPEC_SETTINGS.read_text(encoding="utf-8").splitlines()
    names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    malformed = [name for name in names if not SETTING_NAME.fullmatch(name)]
    assert not malformed, f"{SPEC_SETTINGS.name}: not variable names: {malformed}"
    assert len(names) >= 15, f"{SPEC_SETTINGS.name}: too few settings to be the SPEC's table"
    return frozenset(names)


def unknown_settings(configmap: Obj) -> set[str]:
    """The keys of a ConfigMap that are not settings the SPEC names."""
    return set(configmap.get("data", {})) - spec_settings()


class _Recording(dict[str, str]):
    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def settings_read() -> set[str]:
    """Every variable `tokensvc.config.load` reads, whatever the service."""
    env = _Recording(
        {
            "TOKENSVC_ISSUER": "https://a.example",
            "TOKENSVC_INTERNAL_TOKEN": "x" * 16,
            "TOKENSVC_KEYS_FILE": "/k",
        }
    )
    config.load(env)
    config.load(env, signs=False)
    return {name for name in env.asked if name.startswith("TOKENSVC_")}


def tokensvc_containers(r: Rendered) -> Iterator[tuple[str, Obj]]:
    for where, container in r.containers():
        if container["image"].split("/")[-1].startswith("tokensvc:"):
            yield where, container


def secret(r: Rendered, name: str) -> Obj:
    """The Secret as rendered, or, where the overlay leaves it to a secret manager, the shape
    the base documents with placeholders."""
    if any(s["metadata"]["name"] == name for s in r.of("Secret")):
        return r.get("Secret", name)
    return render("base").get("Secret", name)


def env_of(r: Rendered, container: Obj) -> dict[str, str]:
    """The environment a container starts with: its envFrom ConfigMaps and Secrets, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(r.get("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(secret(r, source["secretRef"]["name"]).get("stringData", {}))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def deployment(r: Rendered, name: str) -> Obj:
    return r.get("Deployment", name)


def main_container(r: Rendered, name: str) -> Obj:
    (container,) = deployment(r, name)["spec"]["template"]["spec"]["containers"]
    return container


# --------------------------------------------------------------------------- schema


def test_every_object_passes_the_kubernetes_schema(rendered: Rendered) -> None:
    kinds = {o["kind"] for o in rendered.objects}
    assert kinds >= {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
    }, kinds
    for obj in rendered.objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{rendered.name}: {obj['kind']}/{obj['metadata']['name']}: "
                f"{exc.message} at {'/'.join(map(str, exc.path))}"
            )


def test_the_schema_check_catches_a_misspelt_field(production: Rendered) -> None:
    """The check above can fail: strict validation rejects what the API server would drop."""
    broken = yaml.safe_load(yaml.safe_dump(deployment(production, "tokensvc-token")))
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# --------------------------------------------------------------------------- hardening


def test_every_pod_runs_hardened(rendered: Rendered) -> None:
    for where, spec in rendered.pod_specs():
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("runAsUser", 0) != 0, where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
    for where, container in rendered.containers():
        sc = container.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert "privileged" not in sc, where


def test_every_container_has_requests_and_limits(rendered: Rendered) -> None:
    for where, container in rendered.containers():
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            assert set(resources.get(kind, {})) >= {"cpu", "memory"}, f"{where}: {kind}"


def test_services_probe_health_readiness_and_startup(rendered: Rendered) -> None:
    for name in SERVICES:
        container = main_container(rendered, name)
        ports = {p["name"] for p in container["ports"]}
        probes = {
            kind: container[kind]["httpGet"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert probes["livenessProbe"]["path"] == "/healthz", name
        assert probes["startupProbe"]["path"] == "/healthz", name
        assert probes["readinessProbe"]["path"] == "/readyz", name
        assert {p["port"] for p in probes.values()} <= ports, name
    for obj in rendered.of("Deployment"):
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert kind in container, f"{obj['metadata']['name']}/{container['name']}: {kind}"


def test_images_are_pinned(rendered: Rendered) -> None:
    for where, container in rendered.containers():
        image = container["image"]
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{where}: {image} has no tag"
        assert tag != "latest", f"{where}: {image}"
        assert re.fullmatch(r"v?\d+(\.\d+)+(-[a-z0-9.]+)?", tag), f"{where}: {image} not a version"


# --------------------------------------------------------------------------- secrets


def _secret_free(where: str, key: str, value: str) -> None:
    assert "PRIVATE KEY" not in value and '"d"' not in value, f"{where}: {key} holds a key"
    if PLACEHOLDER in value:
        return
    parts = urlsplit(value)
    assert parts.scheme and parts.password is None, (
        f"{where}: {key} is neither a {PLACEHOLDER} placeholder nor a URL without a password"
    )


def test_secrets_hold_placeholders_only(rendered: Rendered) -> None:
    for found in rendered.of("Secret"):
        where = f"Secret/{found['metadata']['name']}"
        assert "data" not in found, f"{where}: use stringData placeholders, not encoded data"
        for key, value in found["stringData"].items():
            _secret_free(where, key, value)


def test_every_secret_a_pod_uses_is_shipped_or_documented(rendered: Rendered) -> None:
    base = {s["metadata"]["name"] for s in render("base").of("Secret")}
    for where, spec in rendered.pod_specs():
        used = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            used |= {
                e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e
            }
        assert used <= base, f"{where}: {used - base} not in k8s/base/secrets.yaml"


def test_secrets_are_not_in_configmaps_or_plain_env(rendered: Rendered) -> None:
    secret_names = {"TOKENSVC_INTERNAL_TOKEN", "TOKENSVC_DATABASE_URL", "TOKENSVC_REDIS_URL"}
    for cm in rendered.of("ConfigMap"):
        assert not secret_names & set(cm["data"]), f"ConfigMap/{cm['metadata']['name']}"
    for where, container in rendered.containers():
        plain = {e["name"] for e in container.get("env", []) if "value" in e}
        assert not secret_names & plain, where


def test_keys_are_mounted_as_a_directory_so_rotation_reaches_the_pods(
    rendered: Rendered,
) -> None:
    container = main_container(rendered, "tokensvc-token")
    keys_file = env_of(rendered, container)["TOKENSVC_KEYS_FILE"]
    mounts = [m for m in container["volumeMounts"] if keys_file.startswith(m["mountPath"] + "/")]
    assert len(mounts) == 1 and "subPath" not in mounts[0], "a subPath mount never updates"
    assert mounts[0].get("readOnly") is True


def test_login_pods_use_their_own_database_role_and_the_same_internal_token() -> None:
    """A compromised login front-end must not hold the token service's database role; it
    must hold the token service's internal token, or it could mint no code."""
    base = render("base")
    token = env_of(base, main_container(base, "tokensvc-token"))
    login = env_of(base, main_container(base, "tokensvc-login"))
    role = urlsplit(login["TOKENSVC_DATABASE_URL"]).username
    assert role and role != urlsplit(token["TOKENSVC_DATABASE_URL"]).username
    assert login["TOKENSVC_INTERNAL_TOKEN"] == token["TOKENSVC_INTERNAL_TOKEN"]
    # ... and never the admin token, which the token service alone holds.
    assert "TOKENSVC_ADMIN_TOKEN" not in login
    assert token["TOKENSVC_ADMIN_TOKEN"] != token["TOKENSVC_INTERNAL_TOKEN"]
    assert "TOKENSVC_KEYS_FILE" in token  # the ConfigMap names it; login never mounts keys
    login_pod = deployment(base, "tokensvc-login")["spec"]["template"]["spec"]
    assert not [v for v in login_pod["volumes"] if v["name"] == "keys"]


# --------------------------------------------------------------------------- network


def _admits(rule: Obj, port: int) -> bool:
    ports = rule.get("ports")
    return ports is None or any(p.get("port") == port for p in ports)


ADMIN_CLIENT = {"tokensvc/admin-client": "true"}  # pods that may call the admin API


def test_internal_port_admits_login_pods_and_admin_clients_only(rendered: Rendered) -> None:
    token_labels = deployment(rendered, "tokensvc-token")["spec"]["template"]["metadata"]["labels"]
    login_labels = deployment(rendered, "tokensvc-login")["spec"]["template"]["metadata"]["labels"]
    policies = [
        p
        for p in rendered.of("NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].items() <= token_labels.items()
    ]
    assert len(policies) == 1, "one NetworkPolicy must select the token pods"
    (policy,) = policies
    assert "Ingress" in policy["spec"]["policyTypes"]
    rules = policy["spec"]["ingress"]
    internal = [r for r in rules if _admits(r, 8081)]
    assert internal, "the internal port admits no one: login pods cannot mint codes"
    for rule in internal:
        sources = rule.get("from")
        assert sources, "a rule without 'from' admits the internal port from anywhere"
        for source in sources:
            assert set(source) == {"podSelector"}, f"internal port admits {source}"
            labels = source["podSelector"]["matchLabels"]
            assert labels.items() <= login_labels.items() or labels == ADMIN_CLIENT, labels
            assert not labels.items() <= token_labels.items()
    admitted = [s["podSelector"]["matchLabels"] for r in internal for s in r["from"]]
    assert ADMIN_CLIENT in admitted, "no pod can reach the admin API"
    assert any(_admits(r, 8080) and not r.get("from") for r in rules), "public port closed"


def test_the_internal_port_is_never_exposed_outside_the_cluster(rendered: Rendered) -> None:
    internal = rendered.get("Service", "tokensvc-internal")
    assert internal["spec"].get("type", "ClusterIP") == "ClusterIP"
    for service in rendered.of("Service"):
        for port in service["spec"]["ports"]:
            if port.get("targetPort") in ("internal", 8081):
                assert service["metadata"]["name"] == "tokensvc-internal"
                assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_services_reach_named_ports_of_their_pods(rendered: Rendered) -> None:
    for service in rendered.of("Service"):
        selector = service["spec"]["selector"]
        targets = [
            d
            for d in rendered.of("Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"Service/{service['metadata']['name']} selects {len(targets)}"
        names = {
            p["name"]
            for c in targets[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, f"{service['metadata']['name']}: {port}"


# --------------------------------------------------------------------------- settings


def test_configmap_settings_are_the_specs(rendered: Rendered) -> None:
    for cm in rendered.of("ConfigMap"):
        unknown = unknown_settings(cm)
        assert not unknown, f"ConfigMap/{cm['metadata']['name']}: not in SPEC.md: {unknown}"


def test_the_settings_check_catches_a_misspelt_key(production: Rendered) -> None:
    """The check above can fail: a key the SPEC does not name is reported, a SPEC one is not."""
    broken = yaml.safe_load(yaml.safe_dump(production.get("ConfigMap", "tokensvc-config")))
    broken["data"]["TOKENSVC_ISUER"] = "https://typo.example"
    broken["data"]["OTEL_SERVICE_NAME"] = "tokensvc"
    assert unknown_settings(broken) == {"TOKENSVC_ISUER"}


def test_every_variable_set_is_one_tokensvc_reads(rendered: Rendered) -> None:
    """No typo survives: a misspelt variable would be ignored silently by the service."""
    known = settings_read()
    for where, container in tokensvc_containers(rendered):
        names = {n for n in env_of(rendered, container) if n.startswith("TOKENSVC_")}
        assert names <= known, f"{where}: unknown settings {names - known}"


def test_services_start_with_the_rendered_settings(rendered: Rendered) -> None:
    """The ConfigMap and Secret (placeholders included) pass the service's own validation."""
    for name, signs in (("tokensvc-token", True), ("tokensvc-login", False)):
        env = env_of(rendered, main_container(rendered, name))
        settings = config.load(env, signs=signs)
        assert settings.workers == 1 and settings.log_format == "json"
        container = main_container(rendered, name)
        ports = {p["containerPort"] for p in container["ports"]}
        expected = {settings.port, settings.internal_port} if signs else {settings.login_port}
        assert ports == expected, name


def test_termination_grace_outlasts_the_drain(rendered: Rendered) -> None:
    for name in SERVICES:
        spec = deployment(rendered, name)["spec"]["template"]["spec"]
        drain = config.load(env_of(rendered, main_container(rendered, name)), signs=False)
        grace = spec["terminationGracePeriodSeconds"]
        assert grace >= drain.drain_seconds + 10, f"{name}: {grace}s, drain {drain.drain_seconds}s"


# --------------------------------------------------------------------------- scaling


def test_each_service_autoscales_on_cpu_and_scales_down_slowly(rendered: Rendered) -> None:
    for name in SERVICES:
        (hpa,) = [
            h
            for h in rendered.of("HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]["name"] == name
        ]
        spec = hpa["spec"]
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= spec["minReplicas"] < spec["maxReplicas"]
        assert [m["resource"]["name"] for m in spec["metrics"]] == ["cpu"]
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 120
        replicas = deployment(rendered, name)["spec"]["replicas"]
        assert spec["minReplicas"] <= replicas <= spec["maxReplicas"]


def test_each_service_has_a_disruption_budget_selecting_its_pods(rendered: Rendered) -> None:
    for name in SERVICES:
        labels = deployment(rendered, name)["spec"]["template"]["metadata"]["labels"]
        budgets = [
            p
            for p in rendered.of("PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(budgets) == 1, name


def test_pods_spread_across_zones(rendered: Rendered) -> None:
    for name in SERVICES:
        spec = deployment(rendered, name)["spec"]["template"]["spec"]
        keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
        assert "topology.kubernetes.io/zone" in keys, name


def test_token_pods_are_ready_for_prometheus(rendered: Rendered) -> None:
    template = deployment(rendered, "tokensvc-token")["spec"]["template"]
    notes = template["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/path"] == "/metrics"
    ports = {p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    assert int(notes["prometheus.io/port"]) in ports


def test_migrations_run_in_a_job_and_pods_wait_for_them(rendered: Rendered) -> None:
    job = rendered.get("Job", "tokensvc-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert "TOKENSVC_DATABASE_URL" in env_of(rendered, container)
    for name in SERVICES:
        init = deployment(rendered, name)["spec"]["template"]["spec"]["initContainers"]
        assert any(c.get("args", [])[:2] == ["migrate", "--check"] for c in init), name


def test_purge_runs_nightly_one_at_a_time_with_the_services_ttls(rendered: Rendered) -> None:
    cron = rendered.get("CronJob", "tokensvc-purge")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "purge"
    env = env_of(rendered, container)
    token_env = env_of(rendered, main_container(rendered, "tokensvc-token"))
    for ttl in ("TOKENSVC_ACCESS_TOKEN_TTL", "TOKENSVC_REFRESH_TOKEN_TTL", "TOKENSVC_CODE_TTL"):
        assert env[ttl] == token_env[ttl], ttl  # the horizons follow the service's TTLs


# --------------------------------------------------------------------------- overlays


def test_production_runs_replicated_with_external_stores(production: Rendered) -> None:
    for name in SERVICES:
        assert deployment(production, name)["spec"]["replicas"] >= 3
        spec = deployment(production, name)["spec"]["template"]["spec"]
        assert spec["affinity"]["podAntiAffinity"], name
        zone = [
            c
            for c in spec["topologySpreadConstraints"]
            if c["topologyKey"] == "topology.kubernetes.io/zone"
        ]
        assert [c["whenUnsatisfiable"] for c in zone] == ["DoNotSchedule"], name
    for pdb in production.of("PodDisruptionBudget"):
        assert pdb["spec"]["minAvailable"] >= 2
    assert {d["metadata"]["name"] for d in production.of("Deployment")} == set(SERVICES)
    # Secrets come from the secret manager; applying the overlay must not overwrite them.
    assert production.of("Secret") == []
    assert {o["metadata"].get("namespace") for o in production.objects} == {"tokensvc"}


def test_dev_runs_one_of_each_with_its_own_stores(dev: Rendered) -> None:
    for name in SERVICES:
        assert deployment(dev, name)["spec"]["replicas"] == 1
    names = {d["metadata"]["name"] for d in dev.of("Deployment")}
    assert names == {*SERVICES, "tokensvc-redis", "tokensvc-postgres"}
    env = env_of(dev, main_container(dev, "tokensvc-token"))
    assert urlsplit(env["TOKENSVC_REDIS_URL"]).hostname == "tokensvc-redis"
    assert urlsplit(env["TOKENSVC_DATABASE_URL"]).hostname == "tokensvc-postgres"
    assert not [s for s in dev.of("Secret") if s["metadata"]["name"] == "tokensvc-keys"]
    init = deployment(dev, "tokensvc-token")["spec"]["template"]["spec"]["initContainers"]
    assert "tokensvc keys generate" in " ".join(init[0]["command"])
