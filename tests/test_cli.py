"""The command line as a user types it: exit codes, help, --verbose, pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BOXWEIGHT = str(Path(sys.executable).with_name("boxweight"))
IN_PROCESS = "--runner=apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BOXWEIGHT, *args], capture_output=True, text=True, timeout=timeout)


def test_no_command_is_a_usage_error():
    done = _run()
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "boxweight: error: a command is required (boxweight --help lists them)"
    assert done.stderr.startswith("usage: boxweight")


@pytest.mark.parametrize("command", ["train", "evaluate", "report", "demo-data"])
def test_every_option_has_help_and_its_default_and_help_loads_no_tensorflow(command):
    code = (
        "import sys\n"
        "from boxweight.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'tensorflow' not in sys.modules, 'help imported TensorFlow'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert text.startswith(f"usage: boxweight {command}") and "example" in text
    options = text.split("options:", 1)[1].split("example", 1)[0]
    entries = [line.strip() for line in options.splitlines() if line.strip().startswith("--")]
    for entry in entries:  # "--flag VALUE  help ..." on one line, or the help on the next one
        following = options.split(entry, 1)[1].splitlines()[1:2]
        has_help = len(entry.split("  ")) > 1 or (
            following and following[0].startswith(" " * 10) and not following[0].strip().startswith("-")
        )
        assert has_help, f"{command}: {entry!r} has no help"
    if command == "train":
        text = " ".join(text.split())  # help lines wrap
        assert "(default: 10)" in text and "(default: focal)" in text and "(default: 0)" in text


@pytest.mark.slow
def test_verbose_shows_the_libraries_log_lines_and_quiet_is_the_default(demo_dir, tmp_path):
    args = ["prepare", "--input", str(demo_dir / "annotations.json"), IN_PROCESS]
    quiet = _run(*args, "--output", str(tmp_path / "a"))
    loud = _run("--verbose", *args, "--output", str(tmp_path / "b"))
    assert quiet.returncode == loud.returncode == 0, loud.stderr[-2000:]
    assert [line.split(":")[0] for line in quiet.stderr.splitlines()] == ["INFO beam_jobs.launcher"]
    assert any(line.startswith("INFO apache_beam") for line in loud.stderr.splitlines()), loud.stderr[-2000:]


@pytest.mark.slow
def test_a_report_piped_into_head_stops_quietly(demo_dir, tmp_path):
    out = tmp_path / "out"
    assert (
        _run("prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(out), IN_PROCESS).returncode == 0
    )
    # a reader that takes one line and leaves, as `| head -1` does
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen(
        [BOXWEIGHT, "report", "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert job.stdout is not None
    job.stdout.readline()
    job.stdout.close()
    stderr = job.stderr.read() if job.stderr else ""
    assert job.wait(timeout=60) in (0, 141)  # 0 when it had written everything before the reader left
    assert "Traceback" not in stderr


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal, as in an interactive shell; the exit code and what it showed there."""
    import pty

    master, slave = pty.openpty()
    job = subprocess.Popen([BOXWEIGHT, *args], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the terminal's other side closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return job.wait(timeout=300), shown.decode("utf-8", "replace")


@pytest.mark.slow
def test_train_and_evaluate_show_progress_on_a_terminal_and_nothing_in_a_pipe(demo_dir, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    assert (
        _run("prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(out), IN_PROCESS).returncode == 0
    )
    train = [
        "train",
        "--train",
        str(out),
        "--out",
        str(run),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "4",
        "--image-size",
        "64",
    ]
    status, shown = _on_a_terminal(train)
    assert status == 0, shown[-2000:]
    assert "epoch 1/1  step 3/3  cls " in shown and "steps/s  ETA " in shown
    status, shown = _on_a_terminal(["evaluate", "--model", str(run), "--data", str(out)])
    assert status == 0, shown[-2000:]
    assert "evaluating 24/24 images" in shown  # the val split: 10% of 240
    piped = _run(*train, "--resume", "--epochs", "2")
    assert piped.returncode == 0 and "step" not in piped.stderr and "\r" not in piped.stderr  # logs stay clean


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["report", "nope"], "boxweight report: error: nope: no such folder"),
        (["report", "--compare", "nope", "nope2"], "boxweight report: error: nope: no such folder"),
        (
            ["train", "--train", "nope/train-*", "--out", "run"],
            "boxweight train: error: no file matches 'nope/train-*'",
        ),
    ],
)
def test_a_wrong_path_is_one_line_and_exit_2(args, line, tmp_path):
    done = subprocess.run([BOXWEIGHT, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [line]


@pytest.mark.slow
def test_prepare_shows_its_stages_on_a_terminal_and_nothing_in_a_pipe(demo_dir, tmp_path):
    status, shown = _on_a_terminal(
        ["prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path / "out"), "--direct_num_workers=2"]
    )
    assert status == 0, shown[-2000:]
    lines = [part.replace("\x1b[K", "") for part in shown.split("\r")]
    assert "prepare: starting workers (1 s)" in lines  # the local workers take seconds to start
    assert any(
        line.startswith(("validating images: ", "writing shards: ", "writing the report (")) for line in lines
    ), lines
    assert shown.rstrip("\r\n").endswith("\r\x1b[K")  # erased before the outputs line ...
    status, small = _on_a_terminal(["prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path / "small")])
    assert status == 0, small[-2000:]  # a small job runs in this process: it has no workers to start
    assert "starting workers" not in small and small.rstrip("\r\n").endswith("\r\x1b[K")
    # at least one stage was shown; which ones depends on how fast this machine runs the small job
    stages = ("starting the runner", "reading annotations: ", "validating images: ", "writing shards: ", "writing the report (")
    assert any(stage in small for stage in stages), small
    piped = _run("prepare", "--input", str(demo_dir / "annotations.json"), "--output", str(tmp_path / "piped"))
    assert (
        piped.returncode == 0 and "\r" not in piped.stderr and "images" not in piped.stderr
    )  # ... and absent from logs
