"""The examples in examples/ run as a user would run them, each on a fresh home directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(example: Path, home: Path) -> None:
    result = subprocess.run([sys.executable, str(example), str(home)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{example.name} failed:\n{result.stdout}\n{result.stderr}"
