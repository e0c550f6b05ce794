"""The type checker passes over the whole package (mypy; settings in setup.cfg)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_mypy_passes_over_the_package() -> None:
    assert importlib.util.find_spec("mypy"), "mypy is not installed: pip install -e .[test]"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "setup.cfg", "rl_control"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
