"""``boxlite.constants``: the defaults a box gets when its options leave them out."""

from __future__ import annotations

from typing import Final

#: CPUs of a box that does not set ``cpus``.
DEFAULT_CPUS: Final = 1
#: Memory limit (MiB) of a box that does not set ``memory_mib``.
DEFAULT_MEMORY_MIB: Final = 1024

__all__ = ["DEFAULT_CPUS", "DEFAULT_MEMORY_MIB"]
