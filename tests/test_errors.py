"""The error boundary every command runs in, and files that a killed writer leaves behind."""

from __future__ import annotations

import errno
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spdbench.cli import app
from spdbench.errors import DEBUG_VARIABLE, UserError, command_errors
from spdbench.files import HOST, check_output_directory, remove_directory, write_text_atomically
from spdbench.records import SUITE_KEYS, append_evaluation, read_suite, write_json


def exit_of(error: BaseException, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """The exit code and the stderr lines of a command whose body raises ``error``."""
    with pytest.raises(SystemExit) as exited, command_errors("spdbench test"):
        raise error
    return int(exited.value.code or 0), capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (UserError("unknown process 'x'"), 2, "error: unknown process 'x'"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/a/summary.json"), 2,
         "error: No space left on device: runs/a/summary.json"),
        (KeyboardInterrupt(), 130, "error: spdbench test interrupted; run it again to resume"),
        (RuntimeError("broken\ninvariant"), 1,
         f"error: internal error in spdbench test (RuntimeError: broken invariant); {DEBUG_VARIABLE}=1 shows the "
         "traceback"),
    ],
    ids=["user", "full-disk", "interrupt", "internal"],
)
def test_every_error_is_one_line_and_an_exit_code(
    error: BaseException, code: int, line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    assert exit_of(error, capsys) == (code, [line])


def test_the_debug_variable_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(RuntimeError, match="broken"), command_errors("spdbench test"):
        raise RuntimeError("broken")


def test_sigterm_interrupts_the_command_so_that_its_cleanup_runs(tmp_path: Path) -> None:
    """A terminated command runs its ``finally`` blocks (``write_atomically`` removes its temporary)."""
    script = f"""
import os, signal
from pathlib import Path
from spdbench.errors import command_errors
from spdbench.files import write_atomically
def killed_while_writing(temporary: Path) -> None:
    temporary.write_text("half")
    os.kill(os.getpid(), signal.SIGTERM)
with command_errors("spdbench test"):
    write_atomically(Path({str(tmp_path)!r}) / "fid.png", killed_while_writing)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path.cwd())
    assert done.returncode == 130
    assert done.stderr.splitlines() == ["error: spdbench test interrupted; run it again to resume"]
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(gone.stdout), os.getpid()
    stale = tmp_path / f".fid.{HOST}.{dead}.{'0' * 32}.png"
    writing = tmp_path / f".fid.{HOST}.{alive}.{'1' * 32}.png"  # another writer of this process, still at work
    other = tmp_path / f".eval.{HOST}.{dead}.{'2' * 32}.png"  # the temporary of another file
    elsewhere = tmp_path / f".fid.another-host.{dead}.{'3' * 32}.png"  # on a shared file system
    for path in (stale, writing, other, elsewhere):
        path.write_bytes(b"")
    write_text_atomically(tmp_path / "fid.png", "done")
    kept = ["fid.png", writing.name, other.name, elsewhere.name]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)


def test_an_output_directory_is_checked_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_output_directory(tmp_path / "new" / "deeper")  # may be made: nothing is created yet
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file, not a directory"):
        check_output_directory(tmp_path / "file" / "out")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    real_access = os.access  # root may write anywhere: the permission the system reports is what counts
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    with pytest.raises(UserError, match="no permission to write in .*locked"):
        check_output_directory(locked / "out")


def test_a_removal_stopped_midway_leaves_nothing_where_the_directory_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``spdbench run --force`` removes the old run: stopped midway, it leaves no summary without
    its samples in the run's place (a rerun would take that for a finished run); the hidden rest
    is out of the suite's runs and goes at the next removal."""
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "summary.json").write_text("{}")
    real_rmtree = shutil.rmtree

    def stopped(path: Path) -> None:
        (Path(path) / "checkpoints").rmdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", stopped)
    with pytest.raises(KeyboardInterrupt):
        remove_directory(runs / "a")
    assert sorted(path.name for path in runs.iterdir()) == [".a.removing", "b"]
    (tmp_path / "suite.json").write_text(json.dumps({**dict.fromkeys(SUITE_KEYS, "x"), "samples": 1}))
    assert [run.run_id for run in read_suite(tmp_path).runs] == ["b"]
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    (runs / "a").mkdir()
    remove_directory(runs / "a")
    assert sorted(path.name for path in runs.iterdir()) == ["b"]

    (runs / "link").symlink_to(runs / "b")  # a link is refused, and what it points to kept
    with pytest.raises(UserError, match="link or a file"):
        remove_directory(runs / "link")
    (runs / ".c.removing").write_text("")  # a file left under the hidden name goes
    (runs / "c").mkdir()
    remove_directory(runs / "c")
    assert sorted(path.name for path in runs.iterdir()) == ["b", "link"] and (runs / "b" / "summary.json").exists()


def test_a_record_never_holds_a_number_that_is_not_finite(tmp_path: Path) -> None:
    """What readers refuse, writers refuse first, and leave what was there: a summary or an
    evaluation with NaN or an infinity is a one-line error."""
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(UserError, match="not writing .*summary.json: it would hold a number that is not finite"):
        write_json(tmp_path / "summary.json", {"scores": {"fid": float("nan")}})
    with pytest.raises(UserError, match="eval.jsonl: it would hold a number that is not finite"):
        append_evaluation(tmp_path, 10, float("inf"), 4)
    assert (tmp_path / "summary.json").read_text() == "{}" and not (tmp_path / "eval.jsonl").exists()


@pytest.mark.parametrize("command", [None, *(info.callback.__name__ for info in app.registered_commands)])
def test_every_help_screen_shows_its_flags_bare_and_its_text_wrapped_by_the_terminal(command: str | None) -> None:
    """``--help`` is listed as the flag it is (no ``<bool>``), and a command's docstring is one
    paragraph whose source line breaks do not reach the screen."""
    args = [command] if command else []
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "2000"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    callbacks = [info.callback for info in app.registered_commands if command in (None, info.callback.__name__)]
    for callback in callbacks:
        first_paragraph = inspect.cleandoc(callback.__doc__ or "").split("\n\n")[0]
        assert " ".join(first_paragraph.split()) in result.output
