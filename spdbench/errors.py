"""The errors a command turns into one line and an exit code, and the boundary that does it.

Exit codes: 2 for what the user or the environment can fix (a ``UserError`` or a process's
``ConfigurationError``: bad input, a corrupt file; an ``OSError``: a full disk, a missing
permission), 1 for an unexpected internal error (one line naming the command; ``SPDBENCH_DEBUG=1``
shows the traceback), 130 for an interrupt (Ctrl-C, or ``SIGTERM``, which is turned into one so that
every ``finally`` runs and no temporary file is left behind). Command-line usage errors (an
unknown option, a value that is not a number) are one line too, through ``OneLineGroup`` and
``OneLineCommand`` (typer) and ``OneLineArgumentParser`` (argparse).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from click import Context, Option
from typer import BadParameter
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import Abort, TyperException

from corruptions import ConfigurationError

USER_ERROR_EXIT_CODE = 2
INTERNAL_ERROR_EXIT_CODE = 1
INTERRUPTED_EXIT_CODE = 130
MAX_SEED = 2**63 - 1  #: a seed, at most (torch's generators take 64 bits)
DEBUG_VARIABLE = "SPDBENCH_DEBUG"


class UserError(Exception):
    """Bad input from the user or the environment: an unknown name, an out-of-range value,
    a missing or corrupt dataset or checkpoint. The message is one line meant for a person."""


def check_seed(seed: int) -> None:
    """A one-line error for a seed outside ``[0, MAX_SEED]``."""
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must lie in [0, {MAX_SEED}], got {seed}")


def one_line(text: str) -> str:
    """``text`` with its whitespace (newlines too) collapsed to single spaces."""
    return " ".join(text.split())


def os_error_text(error: OSError) -> str:
    """What went wrong with which file, e.g. ``No space left on device: runs/x/summary.json``."""
    reason = error.strerror or str(error) or type(error).__name__
    files = [str(name) for name in (error.filename, error.filename2) if name is not None]
    return f"{reason}: {' → '.join(files)}" if files else reason


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def command_errors(command: str) -> Iterator[None]:
    """Run a command's body; turn what it raises into ``error: <one line>`` on stderr and
    ``SystemExit`` with the code of the module docstring. ``SIGTERM`` raises ``KeyboardInterrupt``
    inside the body (from the main thread, where signals can be handled)."""
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave the handler as it is
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except (UserError, ConfigurationError) as error:
        _exit(one_line(str(error)), USER_ERROR_EXIT_CODE)
    except OSError as error:
        _exit(one_line(os_error_text(error)), USER_ERROR_EXIT_CODE)
    except KeyboardInterrupt:
        _exit(f"{command} interrupted; run it again to resume", INTERRUPTED_EXIT_CODE)
    except Exception as error:  # noqa: BLE001 - the boundary: one line instead of a traceback
        if os.environ.get(DEBUG_VARIABLE):
            raise
        reason = one_line(f"{type(error).__name__}: {error}")
        _exit(
            f"internal error in {command} ({reason}); {DEBUG_VARIABLE}=1 shows the traceback",
            INTERNAL_ERROR_EXIT_CODE,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code) from None


class _OneLineUsageErrors:
    """Makes a typer command print its usage errors as ``error: <message>; see <command> --help``
    on one line and exit 2, instead of a usage box, and show ``--help`` as the flag it is."""

    def get_help_option(self, ctx: Context) -> Option | None:
        """Click's help flag, with the empty metavar of every other flag (not ``<bool>``)."""
        option: Option | None = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except TyperException as error:  # a usage error has the context of the command it is about
            message = one_line(error.format_message()).rstrip(".")
            if not message:  # no arguments: the help was shown instead
                raise SystemExit(error.exit_code) from None
            context = getattr(error, "ctx", None)
            hint = f"; see {context.command_path} --help" if context is not None else ""
            _exit(message + hint, error.exit_code)
        except Abort:
            _exit("aborted", INTERRUPTED_EXIT_CODE)
        raise SystemExit(code if isinstance(code, int) else 0)


class OneLineGroup(_OneLineUsageErrors, TyperGroup):
    """A typer app of several commands with one-line usage errors (``typer.Typer(cls=...)``)."""


class OneLineCommand(_OneLineUsageErrors, TyperCommand):
    """A typer command with one-line usage errors (``app.command(cls=...)``)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose usage errors are one line, ``error: <message>; see <prog> --help``,
    and exit 2."""

    def error(self, message: str) -> Any:
        _exit(f"{one_line(message)}; see {self.prog} --help", USER_ERROR_EXIT_CODE)


class BadPath(BadParameter, argparse.ArgumentTypeError):
    """A path refused on the command line: a usage error to typer (click's) and to ``argparse``."""


def parse_path(text: str | Path) -> Path:
    """A path read from the command line (a typer ``parser``, an ``argparse`` type); an empty one
    is refused: ``Path("")`` is the current directory, so ``--out "$UNSET"`` would write there."""
    if text == "":
        raise BadPath("an empty path (the current directory is '.')")
    return Path(text)


def at_least(least: float, kind: type[int] | type[float] = int) -> Callable[[str], Any]:
    """An ``argparse`` type: ``kind`` read from the text, refused (a usage error) unless it is
    finite and at least ``least``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (math.isfinite(value) and value >= least):
            raise argparse.ArgumentTypeError(f"must be at least {least:g}, got {text}")
        return value

    return parse
