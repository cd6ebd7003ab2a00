"""`k8s/observability/`: the alert rules pass `promtool check rules` and their unit tests
(`rules_test.yml`), the PrometheusRule is what `build.py` makes of `rules.yml`, the Grafana
dashboard has its panels, and every metric either queries is one tokensvc exposes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokensvc.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "k8s" / "observability"
RULES = HERE / "rules.yml"
DASHBOARD = HERE / "dashboard.json"
ALERTS = {
    "TokensvcHigh5xxRate",
    "TokensvcStoreUnavailable",
    "TokensvcP99OverBudget",
    "TokensvcRefreshReuseSpike",
    "TokensvcInvalidClientSpike",
    "TokensvcChangeFeedDown",
}
PANELS = {
    "Request rate by endpoint",
    "p99 latency by endpoint",
    "Errors by code",
    "Store call p99 by store and operation",
    "Refresh-token reuse (families revoked)",
    "Authorization code replays",
    "invalid_client by client_id",
    "Lockouts",
    "Rate-limited",
}
# A metric name in PromQL: not part of a longer name, a recorded `level:metric:operation` or
# a label value ("..."), which the lookbehind on `"` and `:` leaves out.
METRIC = re.compile(r"(?<![\w:\"])tokensvc_\w+(?![\w:])")
RECORDED = re.compile(r"(?<![\w\"])\w*:[\w:]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: ./scripts/test installs it (apt-get install prometheus)"
    return subprocess.run(
        [found, *args], cwd=HERE, capture_output=True, text=True, timeout=60, check=False
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def exposed() -> set[str]:
    """The series names tokensvc's registry exposes, with prometheus_client's suffixes."""
    names = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    done = promtool("test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_complete_and_unit_tested() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert set(alerts) == ALERTS
    tested = yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
    fired = {
        check["alertname"]
        for case in tested
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert fired == ALERTS, "each alert needs a case in rules_test.yml that makes it fire"
    for name, alert in alerts.items():
        assert alert.get("for"), name
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook"} <= set(alert["annotations"]), name


def expressions() -> list[tuple[str, str]]:
    found = [(f"rules.yml {r.get('alert') or r['record']}", r["expr"]) for r in rules()]
    for p in panels():
        found += [(f"dashboard.json {p['title']!r}", t["expr"]) for t in p["targets"]]
    return found


def test_queries_use_only_metrics_tokensvc_exposes() -> None:
    names = exposed()
    assert "tokensvc_http_request_duration_seconds_bucket" in names  # the suffixes are right
    recorded = {r["record"] for r in rules() if "record" in r}
    for where, expr in expressions():
        used = METRIC.findall(expr)
        assert used or RECORDED.findall(expr), f"{where}: no metric found in {expr!r}"
        assert set(used) <= names, f"{where}: {set(used) - names} not exposed by tokensvc"
        unknown = set(RECORDED.findall(expr)) - recorded
        assert not unknown, f"{where}: {unknown} not recorded in rules.yml"


def test_metric_regex_sees_names_but_not_recorded_rules_or_label_values() -> None:
    expr = 'a:tokensvc_x:rate5m > 1 and tokensvc_y_total{error="tokensvc_z"}'
    assert METRIC.findall(expr) == ["tokensvc_y_total"]
    assert RECORDED.findall(expr) == ["a:tokensvc_x:rate5m"]


def test_prometheusrule_is_built_from_rules_yml() -> None:
    spec = importlib.util.spec_from_file_location("observability_build", HERE / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    committed = (HERE / "prometheusrule.yaml").read_text()
    assert committed == build.render(RULES.read_text()), "run k8s/observability/build.py"
    rule = yaml.safe_load(committed)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_dashboard_panels_query_the_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {p["title"] for p in panels()} >= PANELS
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels():
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]


@pytest.mark.parametrize("kind", ["PrometheusRule", "ConfigMap"])
def test_kustomization_renders(kind: str) -> None:
    found = shutil.which("kubectl")
    assert found, "kubectl is missing: ./scripts/test installs it (apt-get install kubectl)"
    done = subprocess.run(
        [found, "kustomize", str(HERE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    objects = {o["kind"]: o for o in yaml.safe_load_all(done.stdout)}
    assert kind in objects
    if kind == "ConfigMap":  # the dashboard, as Grafana's sidecar picks it up
        config_map = objects[kind]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(config_map["data"]["dashboard.json"]) == dashboard()
    else:
        assert objects[kind]["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
