"""The package's build backend: maturin's, behind two checks that turn a failure deep inside a
source build into one sentence saying what is missing.

pip builds from the source distribution only where no wheel fits the machine. Boxes need
Linux's namespaces, overlayfs and seccomp, and the box's seccomp filter names x86_64's system
calls, so elsewhere there is nothing to build; on Linux x86_64 the build needs a Rust
toolchain (cargo), which maturin would otherwise try to download mid-build.
"""

from __future__ import annotations

import platform
import shutil
import sys
from typing import Any

import maturin  # type: ignore[import-untyped]

SUPPORTED = "Linux on x86_64 (glibc 2.28 or newer for the published wheels)"


def _refuse_what_cannot_build() -> None:
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "amd64"):
        sys.exit(
            f"boxlite runs boxes on {SUPPORTED} only; this machine is "
            f"{platform.system()} {platform.machine()}, so there is nothing to install here."
        )
    if shutil.which("cargo") is None:
        sys.exit(
            "boxlite: no wheel fits this machine, and building one from source needs a Rust "
            "toolchain (cargo 1.85 or newer on PATH; https://rustup.rs). Install it and retry, "
            f"or use a machine pip has a wheel for: {SUPPORTED}."
        )


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    _refuse_what_cannot_build()
    requires: list[str] = maturin.get_requires_for_build_wheel(config_settings)
    return requires


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    _refuse_what_cannot_build()
    requires: list[str] = maturin.get_requires_for_build_editable(config_settings)
    return requires


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    _refuse_what_cannot_build()
    name: str = maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)
    return name


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    _refuse_what_cannot_build()
    name: str = maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)
    return name


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _refuse_what_cannot_build()
    name: str = maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
    return name


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _refuse_what_cannot_build()
    name: str = maturin.build_editable(wheel_directory, config_settings, metadata_directory)
    return name


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    requires: list[str] = maturin.get_requires_for_build_sdist(config_settings)
    return requires


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    name: str = maturin.build_sdist(sdist_directory, config_settings)
    return name
