"""The ``boxlite`` command line (also ``python -m boxlite``).

    boxlite run [-it] [-e K=V] [-w DIR] [-u USER] [--cpus N] [--memory MIB] IMAGE [CMD...]
    boxlite create [--name NAME] IMAGE [CMD...]     boxlite start|stop|inspect BOX
    boxlite exec [-it] BOX CMD...                   boxlite rm [-f] BOX...
    boxlite ls [-q]                                 boxlite cp SRC DST   (BOX:PATH on one side)
    boxlite logs BOX                                boxlite pull IMAGE   boxlite images
    boxlite serve [--host IP] [--port N] [--api-key KEY]

IMAGE is a registry reference, ``host://`` (the built-in image) or a path to a local OCI image
layout. ``run`` runs CMD as the box's main process (after the image's entrypoint, as Docker
does), or the image's default command; with ``-t`` it runs CMD (default ``sh``) on a terminal
through exec instead. Boxes made by ``create`` are detached: they outlive the command and later
commands reach them by id or name; with CMD, it is their main process, started by ``start``.
``logs`` prints the output of a box's main process and follows it while it runs. ``serve``
serves BoxLite's REST API over the home's boxes until SIGINT or SIGTERM (loopback by default;
with an API key, from ``--api-key`` or ``$BOXLITE_SERVE_API_KEY``, every request must carry
``Authorization: Bearer KEY``); one log line per request goes to stderr. The exit
status of the command in the box becomes the CLI's; errors are one line on stderr (``--debug``
for the trace), with status 125.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from ._native import HOST_IMAGE, Box, BoxInfo, Boxlite, BoxOptions, Execution, Options, serve
from ._terminal import forward
from .errors import BoxliteError, InvalidStateError

__all__ = ["main"]

CLI_ERROR = 125


def _image_options(image: str) -> BoxOptions:
    """Box options for IMAGE: a local OCI image layout when it is a directory, else a reference."""
    if image != HOST_IMAGE and (image.startswith(("/", "./", "../")) or Path(image).is_dir()):
        return BoxOptions(rootfs_path=str(Path(image).resolve()))
    return BoxOptions(image=image)


def _env(pairs: Sequence[str]) -> list[tuple[str, str]]:
    result = []
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            value = os.environ.get(key, "")
        result.append((key, value))
    return result


async def _attach(execution: Execution, interactive: bool, tty: bool) -> int:
    """Connects the execution to this terminal; returns the exit code the CLI should exit with."""
    status = await forward(execution, interactive=interactive, tty=tty)
    if status.signal is not None:
        return 128 + status.signal
    return status.exit_code if status.exit_code >= 0 else CLI_ERROR


async def _find(runtime: Boxlite, box: str) -> Box:
    found = await runtime.get(box)
    if found is None:
        raise BoxliteError(f"no such box: {box}")
    return found


def _copy_end(text: str) -> tuple[str, str]:
    """``BOX:PATH`` as (box, path), or a host path as ("", path): as ``docker cp``, a path that
    starts with ``/`` or ``.`` is the host's even with a ``:`` in it."""
    if text.startswith(("/", ".")) or ":" not in text:
        return "", text
    box, _, path = text.partition(":")
    return box, path


def _box_row(info: BoxInfo) -> str:
    return f"{info.id:12}  {(info.name or '-'):16}  {info.state.status:10}  {info.created_at[:19]}  {info.image}"


async def _run(arguments: argparse.Namespace) -> int:
    # SIGTERM and SIGHUP (a `timeout`, a closed terminal) end the run as Ctrl-C does: the
    # box goes with it, and the status says which signal.
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    ended_by: list[int] = []

    def end(number: int) -> None:
        ended_by.append(number)
        task.cancel()

    for number in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(number, end, number)
    try:
        return await _run_in_a_box(arguments)
    except asyncio.CancelledError:
        if ended_by:
            return 128 + ended_by[0]
        raise


async def _run_in_a_box(arguments: argparse.Namespace) -> int:
    with Boxlite(Options(home_dir=arguments.home)) as runtime:
        options = _image_options(arguments.image)
        options.cpus, options.memory_mib, options.env = arguments.cpus, arguments.memory, _env(arguments.env)
        options.working_dir, options.user = arguments.workdir, arguments.user
        if arguments.command and not arguments.tty:
            options.cmd = arguments.command
        # Kept when its main process ends, so its output can be read; removed below.
        options.auto_remove = False
        box = await runtime.create(options, name=arguments.name)
        try:
            if not arguments.tty:
                try:
                    main = await box.attach(stdin=True)  # before start: nothing is missed
                except InvalidStateError:
                    main = None  # the image has no default command: run a shell instead
                await box.start()
                if main is not None:
                    return await _attach(main, arguments.interactive, False)
            command = arguments.command or ["sh"]
            execution = await box.exec(command[0], command[1:], tty=arguments.tty)
            return await _attach(execution, arguments.interactive, arguments.tty)
        finally:
            await runtime.remove(box.id, force=True)


async def _command(arguments: argparse.Namespace) -> int:
    with Boxlite(Options(home_dir=arguments.home)) as runtime:
        action = arguments.action
        if action == "create":
            options = _image_options(arguments.image)
            options.detach, options.auto_remove, options.cpus, options.memory_mib = True, False, arguments.cpus, arguments.memory
            if arguments.command:
                options.cmd = arguments.command
            box = await runtime.create(options, name=arguments.name)
            print(box.id)
        elif action == "start":
            await (await _find(runtime, arguments.box)).start()
        elif action == "stop":
            await (await _find(runtime, arguments.box)).stop()
        elif action == "rm":
            # As `docker rm`: every box is tried, and each failure said.
            failed = False
            for box in arguments.boxes:
                try:
                    await runtime.remove(box, force=arguments.force)
                except InvalidStateError:
                    failed = True
                    print(f"boxlite: box {box} is running; rm -f stops and removes it", file=sys.stderr)
                except BoxliteError as error:
                    failed = True
                    print(f"boxlite: {error}", file=sys.stderr)
            return CLI_ERROR if failed else 0
        elif action == "ls":
            infos = await runtime.list_info()
            if not arguments.quiet:
                print(f"{'ID':12}  {'NAME':16}  {'STATUS':10}  {'CREATED':19}  IMAGE")
            for info in infos:
                print(info.id if arguments.quiet else _box_row(info))
        elif action == "inspect":
            info = (await (await _find(runtime, arguments.box)).info())
            state = {"status": info.state.status, "running": info.state.running, "pid": info.state.pid, "exit_code": info.state.exit_code}
            print(json.dumps({"id": info.id, "name": info.name, "image": info.image, "state": state, "created_at": info.created_at,
                              "started_at": info.started_at, "cpus": info.cpus, "memory_mib": info.memory_mib}, indent=2))
        elif action == "logs":
            box = await _find(runtime, arguments.box)
            if (await box.info()).state.status != "configured":  # a box never started has no log yet
                try:
                    main = await box.attach(stdin=False)
                except InvalidStateError:
                    return 0  # nor has a box without a main process
                await _attach(main, False, False)
        elif action == "exec":
            box = await _find(runtime, arguments.box)
            execution = await box.exec(arguments.command[0], arguments.command[1:], tty=arguments.tty, env=_env(arguments.env) or None,
                                       cwd=arguments.workdir, user=arguments.user)
            return await _attach(execution, arguments.interactive, arguments.tty)
        elif action == "cp":
            source_box, source_path = _copy_end(arguments.source)
            target_box, target_path = _copy_end(arguments.target)
            if bool(source_box) == bool(target_box):
                raise BoxliteError("cp needs BOX:PATH on exactly one side")
            if source_box:
                await (await _find(runtime, source_box)).copy_out(source_path, target_path)
            else:
                await (await _find(runtime, target_box)).copy_in(source_path, target_path)
        elif action == "pull":

            def show(layer: str, done: int, total: int) -> None:
                if sys.stderr.isatty():
                    print(f"\r{layer[7:19]}: {done / 1e6:7.1f} / {total / 1e6:.1f} MB", end="" if done < total else "\n", file=sys.stderr)

            result = await runtime.images.pull(arguments.image, progress=show)
            print(f"{result.reference} {result.config_digest} ({result.layer_count} layers)")
        elif action == "images":
            print(f"{'REPOSITORY':40}  {'TAG':12}  {'ID':19}  SIZE")
            for image in await runtime.images.list():
                size = f"{(image.size_bytes or 0) / 1e6:.1f} MB"
                print(f"{image.repository:40}  {(image.tag or '-'):12}  {image.id[7:19]:19}  {size}")
    return 0


def _say(text: str) -> None:
    """One line on stderr in one write, so the runtime's log lines (written from its own thread)
    never land inside it."""
    sys.stderr.write(f"boxlite serve: {text}\n")
    sys.stderr.flush()


def _serve(arguments: argparse.Namespace) -> int:
    import logging

    if not arguments.debug:
        logging.basicConfig(level=logging.INFO, format="boxlite serve: %(message)s")
    api_key = arguments.api_key or os.environ.get("BOXLITE_SERVE_API_KEY") or None
    server = serve(Options(home_dir=arguments.home), arguments.host, arguments.port, api_key=api_key,
                   reconnect_grace=float(os.environ.get("BOXLITE_RECONNECT_GRACE", "300")), upload_limit=arguments.upload_limit)
    _say(f"listening on http://{server.address}")

    def stop(number: int, _frame: object) -> None:
        _say(f"{signal.Signals(number).name}: finishing requests in flight, then stopping")
        server.stop()

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop)
    while not server.wait(0.2):  # short waits, so the signal handlers run in between
        pass
    _say("stopped; its boxes stay (detached) for the next server on this home")
    return 0


def _count_up_to(largest: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``largest`` (what BoxOptions can hold)."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= value <= largest:
            raise argparse.ArgumentTypeError(f"{value} is not from 1 to {largest}")
        return value

    return count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boxlite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=None, help="the runtime's home directory (default: $BOXLITE_HOME or ~/.boxlite)")
    parser.add_argument("--debug", action="store_true", help="show the runtime's log and the full trace of errors")
    commands = parser.add_subparsers(dest="action", required=True)

    def box_settings(command: argparse.ArgumentParser) -> None:
        command.add_argument("--name")
        command.add_argument("--cpus", type=_count_up_to((1 << 8) - 1))
        command.add_argument("--memory", type=_count_up_to((1 << 32) - 1), help="MiB")

    def exec_settings(command: argparse.ArgumentParser) -> None:
        command.add_argument("-i", "--interactive", action="store_true", help="forward stdin")
        command.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
        command.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
        command.add_argument("-w", "--workdir")
        command.add_argument("-u", "--user")

    run = commands.add_parser("run", help="run a command in a new box, then remove it")
    box_settings(run)
    exec_settings(run)
    run.add_argument("image")
    run.add_argument("command", nargs=argparse.REMAINDER)
    create = commands.add_parser("create", help="create a detached box; prints its id")
    box_settings(create)
    create.add_argument("image")
    create.add_argument("command", nargs=argparse.REMAINDER)
    for name in ("start", "stop", "inspect"):
        commands.add_parser(name).add_argument("box")
    remove = commands.add_parser("rm", help="remove boxes")
    remove.add_argument("-f", "--force", action="store_true")
    remove.add_argument("boxes", nargs="+")
    listing = commands.add_parser("ls", help="list boxes")
    listing.add_argument("-q", "--quiet", action="store_true")
    execute = commands.add_parser("exec", help="run a command in a box")
    exec_settings(execute)
    execute.add_argument("box")
    execute.add_argument("command", nargs=argparse.REMAINDER)
    copy = commands.add_parser("cp", help="copy files: BOX:PATH HOSTPATH or HOSTPATH BOX:PATH")
    copy.add_argument("source")
    copy.add_argument("target")
    commands.add_parser("logs", help="print (and follow) the output of a box's main process").add_argument("box")
    commands.add_parser("pull", help="pull an image").add_argument("image")
    commands.add_parser("images", help="list pulled images")
    server = commands.add_parser("serve", help="serve BoxLite's REST API over this home's boxes")
    server.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: loopback only)")
    server.add_argument("--port", type=int, default=8100, help="0 picks a free port (default: 8100)")
    server.add_argument("--api-key", default=None, help="the key requests must carry (default: $BOXLITE_SERVE_API_KEY; none: no check)")
    server.add_argument("--upload-limit", type=int, default=1 << 40, metavar="BYTES", help="the largest file upload accepted (default: 1 TiB)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="boxlite: %(levelname)s %(message)s")
    if arguments.action == "exec" and not arguments.command:
        print("boxlite: exec needs a command", file=sys.stderr)
        return CLI_ERROR
    try:
        if arguments.action == "serve":
            return _serve(arguments)
        return asyncio.run(_run(arguments) if arguments.action == "run" else _command(arguments))
    except (BoxliteError, OSError) as error:
        if arguments.debug:
            raise
        print(f"boxlite: {error}", file=sys.stderr)
        return CLI_ERROR
    except KeyboardInterrupt:
        return 130
