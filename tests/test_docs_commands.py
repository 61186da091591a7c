"""Every command line the docs show (README.md and docs/*.md) parses with the commands' current options.

fl-launch, fl-stats and fl-finish go through click's own parser (option names, arity, extra arguments) and the
types that need no file (choices, numbers); the benchmark and fleet scripts (`python -m ...` with an argparse
parser) are asked for their `--help`, and each option a doc line gives must be among it.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from launcher.cli.finish import main as finish_main
from launcher.cli.launch import main as launch_main
from launcher.cli.stats import main as stats_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = {"fl-launch": launch_main, "fl-stats": stats_main, "fl-finish": finish_main}
SCRIPTS = ("benchmarks.", "launcher.fleet.fedscale")  # python -m modules with a --help of their own
CHECKED_TYPES = (click.Choice, click.types._NumberParamTypeBase)
INLINE = re.compile(r"`([^`]+)`")


def doc_lines(text: str):
    """The code blocks' lines (continuations joined) and the inline code spans."""
    block = ""
    for line in text.splitlines():
        if line.startswith("    "):
            block += line.strip()
            if block.endswith("\\"):
                block = block[:-1] + " "
                continue
            yield block
            block = ""
        else:
            yield from INLINE.findall(line)


def commands_in(text: str):
    """(program, argv) for each of our commands in the text, split at shell operators, comments dropped."""
    for line in doc_lines(text):
        line = line.replace("2>&1", " ")
        try:
            lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
            lex.whitespace_split = True
            tokens = list(lex)
        except ValueError:
            continue
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token and set(token) <= set(";&|<>"):
                if command:
                    yield from _ours(command)
                command = [] if token != ">" else ["#redirect"]
            elif command[:1] != ["#redirect"]:
                command.append(token)


def _ours(command: list[str]):
    if "..." in command:  # an elided command line (`fl-launch ... 2>&1 | head -3`)
        return
    if command[0] in COMMANDS:
        yield command[0], command[1:]
    elif command[0] in ("python", "python3") and command[1:2] == ["-m"] and command[2].startswith(SCRIPTS):
        yield command[2], command[3:]


def all_doc_commands() -> list[tuple[str, str, list[str]]]:
    return [(path.relative_to(ROOT).as_posix(), prog, argv)
            for path in DOCS for prog, argv in commands_in(path.read_text())]


def click_refusal(command: click.Command, argv: list[str]) -> str | None:
    """Why click would refuse argv (None: it parses), without running the command or its callbacks."""
    ctx = click.Context(command, info_name=command.name)
    try:
        values, rest, _order = command.make_parser(ctx).parse_args(list(argv))
        if rest:
            return f"unexpected extra arguments {rest}"
        for param in command.params:
            if values.get(param.name) is not None and isinstance(param.type, CHECKED_TYPES):
                param.type_cast_value(ctx, values[param.name])
    except click.UsageError as e:
        return e.format_message()
    except click.BadParameter as e:
        return e.format_message()
    return None


def script_options(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout))


def test_the_docs_show_commands_of_each_kind():
    progs = {prog for _, prog, _ in all_doc_commands()}
    assert set(COMMANDS) <= progs
    assert {"benchmarks.report", "launcher.fleet.fedscale"} <= progs


def test_a_stale_option_is_caught():
    text = "    fl-launch --client-nums 3 --rounds 2   # a typo\nThen `fl-stats --runs --bogus`.\n"
    found = list(commands_in(text))
    assert found == [("fl-launch", ["--client-nums", "3", "--rounds", "2"]), ("fl-stats", ["--runs", "--bogus"])]
    assert all(click_refusal(COMMANDS[prog], argv) for prog, argv in found)
    assert click_refusal(launch_main, ["--mode", "sideways"])
    assert click_refusal(launch_main, ["--client-num", "3", "--rounds", "2"]) is None


def test_every_fl_command_in_the_docs_parses():
    wrong = [f"{doc}: {prog} {shlex.join(argv)}: {why}" for doc, prog, argv in all_doc_commands()
             if prog in COMMANDS and (why := click_refusal(COMMANDS[prog], argv))]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", sorted({prog for _, prog, _ in all_doc_commands() if prog not in COMMANDS}))
def test_every_script_option_in_the_docs_exists(module):
    known = script_options(module)
    wrong = [f"{doc}: python -m {module} {shlex.join(argv)}: {flag}" for doc, prog, argv in all_doc_commands()
             if prog == module for flag in argv if flag.startswith("--") and flag.split("=")[0] not in known]
    assert not wrong, "\n".join(wrong)


def test_the_performance_page_holds_the_benchmark_report_as_written_from_its_json(tmp_path):
    import json

    from benchmarks.performance_page import PAGE, write_section
    from benchmarks.report import report_markdown

    page = tmp_path / "performance.md"
    page.write_text(PAGE.read_text())
    write_section("report", report_markdown(json.loads((ROOT / "benchmarks/results/report.json").read_text())), page)
    assert page.read_text() == PAGE.read_text()
    write_section("femnist_scale", "| mode |\n|---|\n| x |", page)
    assert "<!-- begin femnist_scale -->\n| mode |\n|---|\n| x |\n<!-- end femnist_scale -->" in page.read_text()
    assert "| mode |\n|---|\n| x |" not in PAGE.read_text()
