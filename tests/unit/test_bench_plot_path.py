"""``--plot``: its directory is created and checked before a benchmark runs, not after."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tvcache.bench._report import ModeResult, plot, plot_path
from tvcache.cli import build_parser


def test_a_missing_directory_is_created_and_the_plot_written_there(tmp_path: Path) -> None:
    target = tmp_path / "out" / "nested" / "bench-terminal.png"
    assert plot_path(str(target)) == str(target)
    assert target.parent.is_dir() and not target.exists()
    results = [ModeResult("no cache", call_latencies=[0.2, 0.3], tool_seconds=0.5)]
    (target.parent).rmdir()  # plot() itself creates it too (a caller without the parser)
    plot(results, str(target), "test")
    assert target.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("file/out/x.png", "is a file, not a directory"),
        ("dir", "is a directory: give a file name"),
        ("dir/x.pngg", "matplotlib cannot write '.pngg' files"),
    ],
)
def test_a_bad_plot_path_is_refused_before_the_run_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        plot_path(str(tmp_path / name))
    # the parser refuses it: `tvcache bench` stops before any benchmark work
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["bench", "terminal", "--plot", str(tmp_path / name)])
    assert stopped.value.code == 2
    assert "argument --plot" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "forks", "--quick"],
        ["bench", "plans", "--quick"],
        ["bench", "terminal", "--levels"],
        ["bench", "sql", "--workers", "2"],
    ],
)
def test_plot_for_a_bench_that_draws_none_is_refused_before_the_run(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tvcache.cli import main

    assert main([*argv, "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot is not drawn by" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
