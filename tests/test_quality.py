"""Lint, types and the README's promises, checked as part of the suite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_ruff_is_clean() -> None:
    proc = run("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean() -> None:
    proc = run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block is not None and readme.index("```sh") < 200
    run_once, tests = block.group(1).strip().splitlines()
    assert "collector run-once" in run_once and "configs/default.yml" in run_once
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_the_metric_reference_is_generated_from_the_catalogue() -> None:
    """docs/metrics.md lists every catalogued metric and family: a new metric is its
    catalogue row and its producer; `docs/build_docs.py` writes the page."""
    from collector.domain.catalogue import METRICS, STATE_FAMILIES

    proc = subprocess.run([sys.executable, "docs/build_docs.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    page = (ROOT / "docs" / "metrics.md").read_text()
    for name in [*METRICS, *(f.sample for f in STATE_FAMILIES)]:
        assert f"`{name}`" in page, name
