"""The API reference is generated from the stubs and the package; it must match them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boxlite

ROOT = Path(__file__).parent.parent


def test_the_api_reference_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "api_reference.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_exported_class_is_in_the_reference() -> None:
    reference = (ROOT / "docs" / "api.md").read_text()
    for name in boxlite.__all__:
        if isinstance(getattr(boxlite, name), type) and getattr(boxlite, name).__name__ == name:
            assert f"### `{name}`" in reference, name
