"""The `dledgermq` command in-process: the parser's families, one-line errors that need no
cluster, and the package's shape (no module imports another's private names; cycles are
import-linter's job, see pyproject.toml)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dledgermq.cli
from dledgermq.cli import main
from dledgermq.cli.entry import build_parser

CLI_DIR = Path(dledgermq.cli.__file__).parent


def test_the_families_register_every_command_in_help_order() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert list(commands.choices or ()) == [
        "cluster",
        "broker",
        "namesrv",
        "topic",
        "send",
        "consume",
        "admin",
        "group",
        "dlq",
        "txn",
        "query",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["send", "T", "x", "--count", "0"], "--count must be within 1..100000"),
        (["send", "T", "x", "--property", "bad"], "--property takes NAME=VALUE, got 'bad'"),
        (["consume", "T", "--group", "g", "--wait", "99"], "--wait must be within 0..60 seconds"),
        (
            ["consume", "T", "--group", "g", "--offset-file", "f"],
            "--offset-file goes with --broadcast",
        ),
        (["query", "--id", "a", "--key", "b"], "give exactly one of --id or --key"),
        (["dlq", "list", "g", "--max", "0"], "--max must be within 1..256"),
        (["txn", "list", "--max", "0"], "--max must be within 1..1000"),
        (
            ["txn", "end", "b", "t", "--offset", "-1", "--group", "g", "--commit"],
            "--offset must not be negative",
        ),
    ],
)
def test_a_refused_command_prints_one_line_and_exits_1(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--namesrv", "127.0.0.1:1"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"dledgermq: error: {message}\n")


def test_python_m_dledgermq_runs_the_same_main(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    done = subprocess.run(
        [sys.executable, "-m", "dledgermq", "--help"], capture_output=True, text=True, check=True
    )
    assert done.stdout == build_parser().format_help()


def test_no_cli_module_imports_a_private_name() -> None:
    private = [
        f"{path.name}:{node.lineno} {node.module}.{alias.name}"
        for path in sorted(CLI_DIR.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dledgermq")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []
