"""The collected result of a command run by the convenience boxes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExecResult"]


@dataclass
class ExecResult:
    """Exit code and the whole output of one command."""

    exit_code: int
    stdout: str
    stderr: str
    error_message: str | None = None
