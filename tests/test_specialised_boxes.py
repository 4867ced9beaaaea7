"""The specialised boxes of BoxLite's API: BrowserBox (a browser reached from the host over its
DevTools protocol), ComputerBox (a desktop seen and driven through its X display) and SkillBox
(Claude Code's CLI held in one conversation). Here they run on the built-in host:// image with
the host's chromium, Xvnc, xdotool and xwd (the test setup installs them from Debian), and on an
image without them, which must fail saying what is missing."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import websockets

import boxlite

from .registry import free_port

pytestmark = pytest.mark.timeout(300)

needs = {
    program: pytest.mark.skipif(shutil.which(program) is None, reason=f"{program} is not installed on this host (scripts/test.sh installs it)")
    for program in ("chromium", "Xvnc", "xdotool", "xwd")
}


@needs["chromium"]
async def test_a_browser_box_serves_chromiums_devtools_on_a_host_port(runtime: boxlite.Boxlite) -> None:
    port, cdp_port = free_port(), free_port()
    options = boxlite.BrowserBoxOptions(port=port, cdp_port=cdp_port, memory=1536, cpu=1)
    async with boxlite.BrowserBox(options, runtime=runtime, image=boxlite.HOST_IMAGE) as box:
        assert box.browser == "chromium"
        url = await box.endpoint()
        assert url.startswith(f"ws://localhost:{cdp_port}/devtools/browser/"), url
        async with websockets.connect(url, max_size=None) as devtools:
            await devtools.send(json.dumps({"id": 1, "method": "Browser.getVersion"}))
            version = json.loads(await devtools.recv())["result"]
            assert "Chrome" in version["product"], version
            await devtools.send(json.dumps({"id": 2, "method": "Target.createTarget", "params": {"url": "data:text/html,<title>boxed</title>"}}))
            assert "targetId" in json.loads(await devtools.recv())["result"]
        assert await box.endpoint() == url, "the browser already runs: the same one"
    assert await runtime.list_info() == []


async def test_a_browser_box_without_a_browser_says_what_is_missing(runtime: boxlite.Boxlite, busybox_image: str) -> None:
    with pytest.raises(ValueError, match="browser must be one of"):
        boxlite.BrowserBox(boxlite.BrowserBoxOptions(browser="lynx"))
    options = boxlite.BrowserBoxOptions(port=free_port(), cdp_port=free_port(), memory=256, cpu=1)
    async with boxlite.BrowserBox(options, runtime=runtime, rootfs_path=busybox_image) as box:
        with pytest.raises(boxlite.UnsupportedError, match="needs chromium in the box's image"):
            await box.endpoint()
        with pytest.raises(boxlite.UnsupportedError, match="needs npx"):
            await box.playwright_endpoint()
    webkit = boxlite.BrowserBox(boxlite.BrowserBoxOptions(browser="webkit"), runtime=runtime)
    with pytest.raises(ValueError, match="WebKit has no remote debugging endpoint"):
        await webkit.endpoint()
    assert webkit._box_opts.image == "mcr.microsoft.com/playwright:v1.58.0-jammy", "BoxLite's image by default"


def png_size_and_pixels(png: bytes) -> tuple[int, int, bytes]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    data, offset = b"", 8
    while offset < len(png):
        (length,), kind = struct.unpack(">I", png[offset : offset + 4]), png[offset + 4 : offset + 8]
        if kind == b"IDAT":
            data += png[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return width, height, zlib.decompress(data)


@needs["Xvnc"]
@needs["xdotool"]
@needs["xwd"]
async def test_a_computer_box_is_seen_and_driven_through_its_display(runtime: boxlite.Boxlite) -> None:
    # TigerVNC's X server: a desktop without a screen whose pointer moves (Xvfb 21's does not).
    x_server = ["Xvnc", ":1", "-geometry", "1024x768", "-depth", "24", "-SecurityTypes", "None", "-localhost", "yes"]
    desktop = boxlite.ComputerBox(cpu=1, memory=512, gui_http_port=free_port(), gui_https_port=free_port(), runtime=runtime, image=boxlite.HOST_IMAGE, cmd=x_server)
    async with desktop:
        await desktop.wait_until_ready(timeout=60)
        assert await desktop.get_screen_size() == (1024, 768)
        await desktop.mouse_move(100, 200)
        assert await desktop.cursor_position() == (100, 200)
        for click in (desktop.left_click, desktop.right_click, desktop.middle_click, desktop.double_click, desktop.triple_click):
            await click()
        await desktop.left_click_drag(10, 20, 50, 60)
        assert await desktop.cursor_position() == (50, 60)
        await desktop.scroll(300, 310, "down", amount=2)
        assert await desktop.cursor_position() == (300, 310)
        with pytest.raises(ValueError, match="Invalid scroll direction"):
            await desktop.scroll(0, 0, "sideways")
        await desktop.type("hello")
        await desktop.key("ctrl+a")
        shot = await desktop.screenshot()
        assert (shot["width"], shot["height"], shot["format"]) == (1024, 768, "png")
        width, height, rows = png_size_and_pixels(base64.b64decode(shot["data"]))
        assert (width, height, len(rows)) == (1024, 768, 768 * (1 + 1024 * 3)), "one filter byte and 1024 RGB pixels a row"
    assert await runtime.list_info() == []


@needs["xdotool"]
async def test_a_computer_box_without_a_display_or_its_tools_says_so(runtime: boxlite.Boxlite, busybox_image: str) -> None:
    ports = {"gui_http_port": free_port(), "gui_https_port": free_port()}
    async with boxlite.ComputerBox(cpu=1, memory=256, runtime=runtime, image=boxlite.HOST_IMAGE, **ports) as desktop:
        with pytest.raises(boxlite.TimeoutError, match="Desktop did not become ready within 2 seconds .*display"):
            await desktop.wait_until_ready(timeout=2)
        with pytest.raises(boxlite.ExecError, match=r"mouse_move\(1, 2\)"):
            await desktop.mouse_move(1, 2)
    async with boxlite.ComputerBox(cpu=1, memory=256, runtime=runtime, rootfs_path=busybox_image, **ports) as desktop:
        with pytest.raises(boxlite.NotFoundError, match="xdotool"):
            await desktop.wait_until_ready(timeout=5)


# Claude Code's CLI as far as SkillBox uses it: --version, then stream-json on stdin and stdout.
FAKE_CLAUDE = r'''#!/usr/bin/env python3
import json, os, sys
if sys.argv[1:] == ["--version"]:
    print("2.0.0 (Claude Code)")
    sys.exit(0)
assert "--input-format" in sys.argv and "stream-json" in sys.argv, sys.argv
turn = 0
for line in sys.stdin:
    message = json.loads(line)
    turn += 1
    for answer in (
        {"type": "system", "subtype": "init", "session_id": "session-1"},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "thinking"}]}, "session_id": "session-1"},
        {"type": "result", "result": "turn %d in %s: %s (token %s)" % (turn, message["session_id"], message["message"]["content"], os.environ["CLAUDE_CODE_OAUTH_TOKEN"]), "session_id": "session-1"},
    ):
        print(json.dumps(answer), flush=True)
'''


# npx as far as SkillBox uses it: `npx add-skill ID -y --agent claude-code`, recorded.
FAKE_NPX = """#!/bin/sh
echo "$*" >> /root/npx-calls
[ "$1 $3 $4 $5" = "add-skill -y --agent claude-code" ] && [ "$2" != "no/such-skill" ]
"""


async def test_a_skill_box_holds_one_conversation_with_the_cli(runtime: boxlite.Boxlite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN", raising=False)
    tokenless = boxlite.SkillBox(runtime=runtime, image=boxlite.HOST_IMAGE, disk_size_gb=None)
    with pytest.raises(ValueError, match="OAuth token required"):
        await tokenless.__aenter__()
    assert await runtime.list_info() == [], "nothing is made without a token"

    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "claude").write_text(FAKE_CLAUDE)
    (tools / "npx").write_text(FAKE_NPX)
    box = boxlite.SkillBox(
        skills=["anthropics/skills"], oauth_token="tok-123", runtime=runtime, image=boxlite.HOST_IMAGE, disk_size_gb=None, memory_mib=512,
        env=[("PATH", "/root/bin:/usr/bin:/bin")],
    )
    assert "tok-123" not in repr(box) and box.gui_http_port != box.gui_https_port
    async with box:
        await box.copy_in(str(tools), "/root/bin")
        await box.exec("chmod", "755", "/root/bin/claude", "/root/bin/npx")
        assert await box.call("hello") == "turn 1 in default: hello (token tok-123)"
        assert await box.call("again") == "turn 2 in session-1: again (token tok-123)", "one process, one session"
        assert (await box.exec("cat", "/root/npx-calls")).stdout == "add-skill anthropics/skills -y --agent claude-code\n", "skills install once, first"
        assert await box.install_skill("more/skills") is True
        assert await box.install_skill("no/such-skill") is False
    assert await runtime.list_info() == []


def test_a_sync_skill_box_checks_its_token_before_making_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN", raising=False)
    with boxlite.SyncBoxlite(boxlite.Options(home_dir=str(tmp_path / "home"))) as runtime:
        with pytest.raises(ValueError, match="OAuth token required"):
            with boxlite.SyncSkillBox(runtime=runtime, image=boxlite.HOST_IMAGE, disk_size_gb=None):
                pass
    assert not list((tmp_path / "home" / "boxes").iterdir())
