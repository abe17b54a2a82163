"""The package's shape, checked: one-way imports between layers, no command module imported
by anything but the registry, a pure domain, torch only on the worker side, and no import
cycle at all (docs/architecture.md). The contracts are import-linter's, in pyproject.toml;
this module runs them, shows that they fail on a deliberate violation, and holds the
contract's list of commands to the registry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import networkx
import pytest
import tomllib

from collector.cli.commands import COMMANDS

ROOT = Path(__file__).parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the package found at `root`, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_every_import_contract_is_kept() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"Contracts: (\d+) kept, 0 broken", proc.stdout), proc.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package and the contracts in a scratch directory, to break on purpose."""
    root = tmp_path_factory.mktemp("layout")
    shutil.copytree(ROOT / "collector", root / "collector",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(("module", "line", "broken"), [
    # the domain reaching up to a command
    ("domain/stats.py", "from collector.cli.commands import run_once",
     "collector.domain is not allowed to import collector.cli"),
    # presentation reaching into an adapter
    ("present/text.py", "from collector.adapters import store", "collector.present is not "
     "allowed to import collector.adapters"),
    # a command used as a library by another
    ("cli/commands/rerun.py", "from collector.cli.commands import compare",
     "collector.cli.commands.rerun is not allowed to import collector.cli.commands.compare"),
    # the version read from the package root
    ("adapters/host.py", "from collector import __version__", "collector.adapters.host is not "
     "allowed to import collector"),
    # torch outside the worker side
    ("usecases/rerun.py", "import torch", "collector.usecases is not allowed to import torch"),
    # a cycle: findings reads compare, which would read findings
    ("analysis/compare.py", "from collector.analysis import findings", "No cycles are allowed"),
])
def test_a_violation_breaks_the_contract(copy: Path, module: str, line: str,
                                         broken: str) -> None:
    path = copy / "collector" / module
    original = path.read_text()
    path.write_text(f"{line}  # noqa\n{original}")
    try:
        proc = lint_imports(copy)
    finally:
        path.write_text(original)
    assert proc.returncode == 1, proc.stdout
    assert broken in " ".join(proc.stdout.split()), proc.stdout


def test_every_command_module_is_registered_and_independent() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]
    [commands] = [c for c in contracts if c["id"] == "commands"]
    assert commands["modules"] == ["collector.cli.commands.*"]
    registered = {m.__name__ for m in COMMANDS}
    folder = ROOT / "collector" / "cli" / "commands"
    assert {f"collector.cli.commands.{p.stem}" for p in folder.glob("*.py")
            if p.stem != "__init__"} == registered
    assert len({m.NAME for m in COMMANDS}) == len(COMMANDS)


def test_no_module_imports_another_in_a_circle() -> None:
    """Zero import cycles at module level (lazy imports inside functions included), found
    as strongly connected components of grimp's graph (networkx finds them)."""
    graph = grimp.build_graph("collector", cache_dir=None)
    imports = networkx.DiGraph()
    for module in graph.modules:
        imports.add_edges_from((module, imported) for imported in
                               graph.find_modules_directly_imported_by(module) & graph.modules)
    assert imports.number_of_nodes() > 100 and imports.number_of_edges() > 500
    assert [c for c in networkx.strongly_connected_components(imports) if len(c) > 1] == []
