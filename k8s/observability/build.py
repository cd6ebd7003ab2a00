"""Generate prometheusrule.yaml (a Prometheus Operator `PrometheusRule`) from rules.yml.

Run by hand after editing rules.yml: `.venv/bin/python k8s/observability/build.py`;
tests/deploy/test_observability.py fails while the committed file differs from the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.yml"
OUTPUT = HERE / "prometheusrule.yaml"
HEADER = "# Generated from rules.yml by build.py: edit rules.yml, then run build.py.\n"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None  # PromQL over several lines stays readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(rules_text: str) -> str:
    rules: dict[str, Any] = yaml.safe_load(rules_text)
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "tokensvc", "labels": {"app.kubernetes.io/name": "tokensvc"}},
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    OUTPUT.write_text(render(RULES.read_text()))
