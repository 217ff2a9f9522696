"""The one progress line, the one Ctrl+C handler and their wiring in ``corrflow`` main;
``--version`` and ``--help`` defaults."""
from __future__ import annotations

import io
import signal
import threading

import pytest

from corrflow_napari import __version__, cli
from corrflow_napari.cli import main
from corrflow_napari.cli_progress import CancelOnSigint, ProgressBar


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_log_file_lines_throttled_and_final():
    s = io.StringIO()
    bar = ProgressBar("train", unit="step", stream=s)
    bar(0, 4)
    bar(1, 4, 2.0)            # within 30 s of the last line: not written to a log file
    bar(4, 4, 1.0)            # the end is always written
    lines = s.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in s.getvalue()
    assert lines[0].startswith("train 0/4 [")
    assert lines[1].startswith("train 4/4 [" + "=" * ProgressBar.width + "]")
    assert "step" in lines[1] and "loss 1.000 (avg 1.950)" in lines[1]


def test_progress_terminal_rewrites_one_line():
    s = _Tty()
    bar = ProgressBar("propagate", stream=s)
    bar(0, 3)
    bar(3, 3)
    out = s.getvalue()
    assert out.startswith("\rpropagate 0/3 [") and out.endswith("\n")
    assert out.count("\r") == 2 and "frame" in out.split("\r")[-1]


def test_progress_without_total():
    s = io.StringIO()
    bar = ProgressBar("fine-tune", unit="step", stream=s)
    bar(1, None, 0.5)
    assert s.getvalue() == "fine-tune 1 loss 0.500 (avg 0.500)\n"


def test_sigint_first_cancels_second_interrupts():
    before = signal.getsignal(signal.SIGINT)
    said = []
    event = threading.Event()
    with CancelOnSigint(event, "stopping", log=said.append):
        signal.raise_signal(signal.SIGINT)
        assert event.is_set() and said[-1].endswith("stopping")
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    with CancelOnSigint(None), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("command,message", [("train", "stop test"), ("track", None)])
def test_main_ctrl_c_exit_130(command, message, monkeypatch, capsys):
    seen = {}

    def fake(args, cancel):
        seen["cancel"] = cancel
        signal.raise_signal(signal.SIGINT)
        return 0

    monkeypatch.setitem(cli.COMMANDS, command, (fake, message))
    argv = {"train": ["train", "v", "--out", "x.pt"],
            "track": ["track", "v", "--points", "p.csv", "--out", "t.csv"]}[command]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    if message:
        assert seen["cancel"].is_set() and message in err
    else:
        assert seen["cancel"] is None


def test_version_and_help_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"corrflow {__version__}"
    for command, shown in [("propagate", "(default: both)"), ("train", "(default: auto)"),
                           ("eval-davis", "(default: all)")]:
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert e.value.code == 0 and shown in out and "(default: None)" not in out
