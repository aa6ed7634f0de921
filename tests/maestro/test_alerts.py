"""The alert rules: valid for Prometheus (`promtool check rules`), behaving as their unit tests say
(`promtool test rules`), and every runbook link lands on a heading of the README."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.support.processes import ROOT
from tests.support.prometheus import prometheus_binary

RULES = ROOT / "docs/observability/prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([prometheus_binary("promtool"), *args], cwd=RULES, capture_output=True, text=True, timeout=60)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def readme_anchors() -> set[str]:
    text = (ROOT / "README.md").read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a comment in a code block is not a heading
    return {github_anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_the_rules_are_valid():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_the_rules_pass_their_unit_tests():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook_link_into_the_readme():
    rules = [rule for group in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"] for rule in group["rules"]]
    anchors = readme_anchors()
    for rule in rules:
        link = rule["annotations"]["runbook_url"]
        assert link.startswith("README.md#") and link.removeprefix("README.md#") in anchors, (rule["alert"], link)
        assert rule["labels"]["severity"] in {"page", "ticket"} and rule["annotations"]["summary"]
