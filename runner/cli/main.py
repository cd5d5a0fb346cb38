"""The command line: `main(argv) -> int`, the sub-commands, and the one error handler that
turns every failure into an exit code (README.md "The command line")."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from runner.cli.checking import add_checking_commands
from runner.cli.init import add_init_command
from runner.cli.preview import add_preview_command
from runner.cli.render import add_render_command
from runner.cli.running import add_runner_commands
from runner.cli.serve import add_serve_command
from runner.cli.simulate import add_simulate_command
from runner.cli.subscribers import add_subscriber_commands
from runner.errors import PostwrightError

EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as shells report a writer whose reader left (`| head`)
TRACEBACK_DIR_VARIABLE = "POSTWRIGHT_TRACEBACK_DIR"


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run one command. Exit 0 clean, 1 failing findings, 2 could not run (a PostwrightError:
    its `exit_code` and one line), 3 an internal error (one line naming the traceback's
    file), 130 interrupted, 141 when the reader of stdout went away."""
    out = stdout or sys.stdout
    args = _parser().parse_args(argv)
    try:
        result: int = args.run(args, out)
        return result
    except PostwrightError as error:
        print(f"postwright: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("postwright: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader closed the pipe: not an error of ours. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as error:
        where = _keep_traceback(error, args.debug, os.environ)
        summary = f"{type(error).__name__}: {error}".splitlines()[0]
        print(f"postwright: internal error: {summary} ({where})", file=sys.stderr)
        return EXIT_INTERNAL


def _keep_traceback(error: Exception, debug: bool, environ: Mapping[str, str]) -> str:
    """Write the traceback to stderr (--debug) or to a file; say where it went."""
    text = "".join(traceback.format_exception(error))
    if not debug:
        folder = environ.get(TRACEBACK_DIR_VARIABLE) or tempfile.gettempdir()
        try:
            handle, name = tempfile.mkstemp(
                prefix="postwright-traceback-", suffix=".txt", dir=folder
            )
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            return f"traceback in {name}; please report it"
        except OSError:
            pass  # no writable folder: the traceback goes to stderr after all
    sys.stderr.write(text)
    return "traceback above; please report it"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postwright",
        description="Automations as YAML in Git, validated per commit, sent by `serve`.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an internal error"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_checking_commands(commands, _add_repo)
    add_serve_command(commands, _add_repo)
    add_runner_commands(commands, _add_repo)
    add_render_command(commands, _add_repo)
    add_preview_command(commands, _add_repo)
    add_subscriber_commands(commands, _add_repo)
    add_init_command(commands, _add_repo)
    add_simulate_command(commands, _add_repo)
    return parser


def _add_repo(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--repo", metavar="DIR", type=Path, default=None, help="repository root (default: here)"
    )
