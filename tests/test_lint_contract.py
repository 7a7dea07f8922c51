"""`make lint`'s import contract fails on an import against the layer order.

The contract (pyproject.toml, [tool.importlinter]) is run on a copy of the packages with one
wrong import added, so the check is shown to bite, not just to pass on today's code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "campaigns", "models", "enrichment", "clickstream", "store")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_the_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "wrong"),
    [
        ("store/keys.py", "import app.settings"),  # a lower layer importing the top
        ("models/ranking.py", "import campaigns.offers"),  # models reaching into its caller
        ("enrichment/geo.py", "import clickstream.schemas"),  # siblings importing each other
    ],
)
def test_a_wrong_import_breaks_it(tree: Path, module: str, wrong: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{wrong}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout, result.stdout
