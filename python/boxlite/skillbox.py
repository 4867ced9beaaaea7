"""SkillBox: Claude Code's CLI in a box, with skills, held in one conversation across calls.

``call(prompt)`` talks to one long-running ``claude`` process in the box over its stream-json
protocol (a user message in, JSON lines out until the ``result``), so later prompts continue the
conversation. The CLI is installed on first use if the image lacks it (that needs the box's
network), and so are the skills named at construction. The OAuth token comes from
``oauth_token`` or ``$CLAUDE_CODE_OAUTH_TOKEN`` and is never shown by ``repr()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any

from . import constants
from ._native import Boxlite, ExecStdin, ExecStream, Execution
from .computerbox import DESKTOP_ENV, wait_for_display
from .errors import ExecError
from .simplebox import SimpleBox

__all__ = ["SkillBox"]

logger = logging.getLogger("boxlite.skillbox")

#: How long one answer may take to come (seconds).
ANSWER_TIMEOUT = 600
_INSTALL_CLAUDE = "curl -fsSL https://claude.ai/install.sh | bash"
_MCP_CONFIG = "/config/.claude.json"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SkillBox(SimpleBox):
    """``async with SkillBox(skills=["anthropics/skills"]) as box: await box.call("...")``.

    ``gui_http_port``/``gui_https_port`` publish the image's desktop (0: a free port, read back
    from the attributes of the same names)."""

    def __init__(
        self,
        skills: list[str] | None = None,
        oauth_token: str | None = None,
        name: str = "skill-box",
        image: str = constants.SKILLBOX_IMAGE,
        rootfs_path: str | None = None,
        memory_mib: int = constants.SKILLBOX_MEMORY_MIB,
        disk_size_gb: int | None = constants.SKILLBOX_DISK_SIZE_GB,
        gui_http_port: int = 0,
        gui_https_port: int = 0,
        auto_remove: bool = True,
        runtime: Boxlite | None = None,
        **kwargs: Any,
    ) -> None:
        self._skills = list(skills or [])
        self._oauth_token = oauth_token or os.environ.get("CLAUDE_CODE_OAUTH_TOKEN", "")
        self.gui_http_port = gui_http_port or _free_port()
        self.gui_https_port = gui_https_port or _free_port()
        while self.gui_https_port == self.gui_http_port:
            self.gui_https_port = _free_port()
        self._command_env = {"DISPLAY": constants.COMPUTERBOX_DISPLAY_NUMBER}
        env = [("CLAUDE_CODE_OAUTH_TOKEN", self._oauth_token), *DESKTOP_ENV, *kwargs.pop("env", [])]
        ports = [(self.gui_http_port, constants.SKILLBOX_GUI_HTTP_PORT), (self.gui_https_port, constants.SKILLBOX_GUI_HTTPS_PORT), *kwargs.pop("ports", [])]
        super().__init__(image=None if rootfs_path else image, rootfs_path=rootfs_path, memory_mib=memory_mib, name=name, auto_remove=auto_remove, runtime=runtime, disk_size_gb=disk_size_gb, env=env, ports=ports, **kwargs)
        self._process: Execution | None = None
        self._stdin: ExecStdin | None = None
        self._stdout: ExecStream | None = None
        self._pending = ""
        self._session_id = "default"
        self._set_up = False

    def __repr__(self) -> str:
        return f"SkillBox(name={self._name!r}, skills={self._skills!r}, oauth_token={'***' if self._oauth_token else None})"

    async def start(self) -> SkillBox:
        """Creates (or finds, by name) the box and boots it; without a token, ``ValueError``
        before anything is made. Setting up the CLI waits for the first ``call``."""
        if not self._oauth_token:
            raise ValueError("OAuth token required. Set CLAUDE_CODE_OAUTH_TOKEN env var or pass oauth_token parameter.")
        await super().start()
        return self

    async def __aenter__(self) -> SkillBox:
        return await self.start()

    async def stop(self) -> None:
        """Ends the CLI's conversation, then stops the box (removing it unless
        ``auto_remove=False``)."""
        await self._stop_claude()
        await super().stop()

    async def wait_until_ready(self, timeout: int = constants.DESKTOP_READY_TIMEOUT) -> None:
        """Waits until the image's desktop answers on its X display (1024x768)."""
        await wait_for_display(self, timeout, env=self._command_env)

    async def call(self, prompt: str) -> str:
        """Claude's answer to ``prompt``, in the conversation of the calls before it."""
        self._require_started()
        await self._set_up_once()
        if self._stdin is None or self._stdout is None:
            await self._start_claude()
        return await self._send(prompt)

    async def install_skill(self, skill_id: str) -> bool:
        """Installs a skill (``owner/repo``) with ``npx add-skill``; whether it succeeded."""
        self._require_started()
        await self._set_up_once()
        return await self._install_skill(skill_id)

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("SkillBox not started. Use 'async with SkillBox() as box:'")

    async def _set_up_once(self) -> None:
        if self._set_up:
            return
        if not await self._has_claude():
            logger.info("installing Claude Code's CLI in the box")
            result = await self.exec("bash", "-c", _INSTALL_CLAUDE, env=self._command_env)
            if result.exit_code != 0 or not await self._has_claude():
                raise ExecError(_INSTALL_CLAUDE, result.exit_code, result.stderr or "the CLI is still not on the PATH")
        for skill in self._skills:
            await self._install_skill(skill)
        self._set_up = True

    async def _has_claude(self) -> bool:
        try:
            return (await self.exec("claude", "--version", env=self._command_env)).exit_code == 0
        except RuntimeError:  # not found
            return False

    async def _install_skill(self, skill_id: str) -> bool:
        try:
            result = await self.exec("npx", "add-skill", skill_id, "-y", "--agent", "claude-code", env=self._command_env)
        except RuntimeError as error:  # the image has no npx
            logger.warning("installing skill %s failed: %s", skill_id, error)
            return False
        if result.exit_code != 0:
            logger.warning("installing skill %s failed: %s", skill_id, result.stderr.strip())
        return result.exit_code == 0

    async def _start_claude(self) -> None:
        arguments = ["--dangerously-skip-permissions", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose"]
        if (await self.exec("test", "-f", _MCP_CONFIG)).exit_code == 0:
            arguments += ["--mcp-config", _MCP_CONFIG]
        env = [("CLAUDE_CODE_OAUTH_TOKEN", self._oauth_token), ("IS_SANDBOX", "1"), ("SHELL", "/bin/bash"), *self._command_env.items()]
        self._process = await self._require_box().exec("claude", arguments, env)
        self._stdin, self._stdout = self._process.stdin(), self._process.stdout()
        self._pending = ""

    async def _send(self, content: str) -> str:
        """One user message; the messages that answer it, read to the ``result``; its text."""
        assert self._stdin is not None and self._stdout is not None
        message = {"type": "user", "message": {"role": "user", "content": content}, "session_id": self._session_id, "parent_tool_use_id": None}
        await self._stdin.send_input((json.dumps(message) + "\n").encode())
        answers: list[dict[str, Any]] = []
        while not answers or answers[-1].get("type") != "result":
            while "\n" not in self._pending:
                try:
                    self._pending += await asyncio.wait_for(self._stdout.__anext__(), ANSWER_TIMEOUT)
                except StopAsyncIteration:
                    await self._stop_claude()
                    raise ExecError("claude", -1, "the CLI ended before it answered") from None
            line, self._pending = self._pending.split("\n", 1)
            if line.strip():
                try:
                    answers.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.debug("not a message from the CLI: %s", line[:200])
                    continue
                self._session_id = answers[-1].get("session_id") or self._session_id
        return str(answers[-1].get("result", ""))

    async def _stop_claude(self) -> None:
        stdin, process, self._stdin, self._stdout, self._process = self._stdin, self._process, None, None, None
        if stdin is not None:
            try:
                await stdin.close()
            except RuntimeError:  # the process is gone already
                pass
        if process is not None:
            process.close()
