"""BoxLite's Python API as its users know it (reference/python-api.md §16, the scenarios that need
no VM): names, call shapes, defaults and error classes."""

from __future__ import annotations

import builtins
import dataclasses
import re

import pytest

import boxlite
import boxlite.exec


def test_exec_result_is_the_dataclass_users_compare() -> None:
    result = boxlite.ExecResult(exit_code=0, stdout="output", stderr="")
    assert dataclasses.is_dataclass(result)
    assert result == boxlite.ExecResult(0, "output", "")
    assert "exit_code=0" in repr(result) and "stdout='output'" in repr(result)
    assert boxlite.ExecResult is boxlite.exec.ExecResult


def test_error_classes_keep_their_shapes() -> None:
    assert str(boxlite.BoxliteError("m")) == "m" and str(boxlite.BoxliteError()) == ""
    error = boxlite.ExecError("ls -la", 1, "x")
    assert (error.command, error.exit_code, error.stderr) == ("ls -la", 1, "x")
    assert "ls -la" in str(error) and "1" in str(error) and "x" in str(error)
    for kind in (boxlite.ExecError, boxlite.TimeoutError, boxlite.ParseError):
        assert issubclass(kind, boxlite.BoxliteError)
    assert issubclass(boxlite.TimeoutError, builtins.TimeoutError)
    for kind in (boxlite.NotFoundError, boxlite.InvalidStateError, boxlite.RuntimeClosedError, boxlite.ImageError, boxlite.NetworkError):
        assert issubclass(kind, boxlite.BoxliteError) and issubclass(kind, RuntimeError) and isinstance(kind.code, str)
    assert issubclass(boxlite.RuntimeClosedError, boxlite.InvalidStateError)


def test_box_options_read_back_as_given() -> None:
    options = boxlite.BoxOptions()
    assert (options.auto_remove, options.detach, options.cmd, options.entrypoint, options.user) == (None, None, None, None, None)
    assert repr(options) == "BoxOptions(image=None, rootfs_path=None, cpus=None, memory_mib=None)"
    options = boxlite.BoxOptions(auto_remove=False, detach=True, cmd=[], entrypoint=[], user="1000:1000")
    assert (options.auto_remove, options.detach, options.cmd, options.entrypoint, options.user) == (False, True, [], [], "1000:1000")
    assert boxlite.BoxOptions(cmd=["sleep", "10"]).cmd == ["sleep", "10"]
    for bad in ({"network": "enabled"}, {"allow_net": ["x"]}, {"cap_add": ["NET_ADMIN"]}):
        with pytest.raises(TypeError):
            boxlite.BoxOptions(**bad)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        boxlite.BoxOptions(cpus=256)


def test_the_module_exports_what_users_import() -> None:
    for name in ("Boxlite", "Box", "BoxInfo", "BoxStateInfo", "ImageHandle", "ImageInfo", "ImagePullResult", "Options", "BoxOptions",
                 "SimpleBox", "CodeBox", "ExecResult", "CopyOptions", "ImageRegistry"):
        assert name in boxlite.__all__ and hasattr(boxlite, name), name
    for attribute in ("resize_tty", "kill", "wait", "stdin", "stdout", "stderr", "signal", "id"):
        assert hasattr(boxlite.Execution, attribute)
    assert isinstance(boxlite.__version__, str)


async def test_a_new_runtime_is_empty(runtime: boxlite.Boxlite) -> None:
    assert await runtime.list_info() == []
    assert await runtime.get_info("nope") is None
    assert await runtime.get("nope") is None
    assert await runtime.images.list() == []
    metrics = await runtime.metrics()
    assert (metrics.boxes_created_total, metrics.num_running_boxes, metrics.total_commands_executed) == (0, 0, 0)
    assert repr(metrics) == "RuntimeMetrics(boxes_created=0, boxes_failed=0, running=0, commands=0, errors=0)"
    for force in (False, True):
        with pytest.raises(boxlite.NotFoundError):
            await runtime.remove("nope", force=force)
    assert repr(runtime) == "Boxlite(open=true)"


async def test_a_created_box_reads_back(runtime: boxlite.Boxlite) -> None:
    box = await runtime.create(boxlite.BoxOptions(image=boxlite.HOST_IMAGE, cpus=2, memory_mib=512))
    assert re.fullmatch(r"[0-9A-Za-z]{12}", box.id)
    info = await box.info()
    assert (info.state.status, info.state.running, info.state.pid) == ("configured", False, None)
    assert (info.image, info.cpus, info.memory_mib) == (boxlite.HOST_IMAGE, 2, 512)
    with pytest.raises(TypeError):
        box.exec("echo", "hello")  # type: ignore[arg-type]
    with pytest.raises(boxlite.InvalidArgumentError):
        box.exec("sleep", ["1"], timeout_secs=-1)
    with pytest.raises(RuntimeError, match="no running event loop"):
        await __import__("asyncio").to_thread(lambda: runtime.list_info())
