"""The code passes ruff as pyproject.toml configures it (line length 120; pycodestyle, pyflakes,
bugbear, pyupgrade): a new long line, unused import or shadowed loop variable fails here, in the
README's test command, as in an editor."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the dev extra: pip install -e '.[dev]')")
    done = subprocess.run([ruff, "check", "--no-cache", "src", "tests", "benchmarks", "mkdocs_hooks.py"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
