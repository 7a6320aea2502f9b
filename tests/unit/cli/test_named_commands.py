"""Every `stratus ...` command that a message, a hint, a help text or the docs tell users to run
exists: its command path is a real command of the Typer CLI, and every option it names is an
option of that command.

Commands are collected from every string literal under src/stratus (f-strings too, their
placeholders left open), and from the code of README.md and docs/*.md (fenced blocks, with
their `\\` continuations, and inline code spans).
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

ROOT = Path(__file__).resolve().parents[3]
HOLE = "\x00"  # an f-string placeholder: any value, not checked
_MENTION = re.compile(r"(?<![\w./$-])stratus(?=[ \t]+\S)")
_NOT_A_COMMAND = re.compile(r"(?:\bfrom|\bimport|-m|\binstall)[ \t]+$")  # Python, pip
_SHELL_START = re.compile(r"(?:^|\$\(|\||&&|;|\(|\$ )[ \t]*(?:[A-Z_][A-Z0-9_]*=\S*[ \t]+)*$")
_OPTION = re.compile(r"^(--[A-Za-z][\w-]*|-[A-Za-z])(?:=.*)?$")


@dataclass(frozen=True)
class Mention:
    where: str  # file:line
    text: str  # from `stratus` to the end of the command


# --- collecting ------------------------------------------------------------------------------


def _command_text(text: str, start: int, *, ends: str) -> str:
    """The command that starts at `start`: up to the end of the line, a closing backtick, or
    (outside quotes) a shell separator, a parenthesis it did not open or one that opens an
    aside; `ends` adds more stops, such as the end of a clause in prose."""
    out: list[str] = []
    quote = ""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        rest = text[i:]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\n`":
            break
        elif ch in "'\"":
            quote = ch
        elif ch == "(" and out and out[-1] in " \t":
            break  # an aside in prose, "(then: ...)", not part of the command
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        elif rest.startswith(("|", ";", "&&", " #", "[/")) or any(rest.startswith(e) for e in ends):
            break
        elif ch == "." and (i + 1 == len(text) or text[i + 1] in " \n"):
            break  # the end of a sentence
        out.append(ch)
        i += 1
    return "".join(out).strip().rstrip("?!:,")


def _python_literals(path: Path) -> Iterator[tuple[int, str]]:
    """Every string literal of a module with its first line; f-strings with HOLE for each
    placeholder."""
    tree = ast.parse(path.read_text(), str(path))
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                inside_fstrings.add(id(value))
                is_text = isinstance(value, ast.Constant) and isinstance(value.value, str)
                parts.append(value.value if is_text else HOLE)  # type: ignore[union-attr]
            yield node.lineno, "".join(parts)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in inside_fstrings
        ):
            yield node.lineno, node.value


def python_mentions(path: Path, where: str) -> Iterator[Mention]:
    for line, literal in _python_literals(path):
        for match in _MENTION.finditer(literal):
            before = literal[: match.start()]
            if _NOT_A_COMMAND.search(before):
                continue
            if match.start() == 0 and "\n" not in literal and "`" not in literal:
                # a whole one-line literal that merely begins with the word: a key derivation's
                # purpose ("stratus audit chain v1"), an audit reason, a process's name
                continue
            text = _command_text(literal, match.start(), ends=(", ", "; "))
            yield Mention(f"{where}:{line + before.count(chr(10))}", text)


def markdown_mentions(text: str, where: str) -> Iterator[Mention]:
    """Commands in fenced code blocks (a line, or a pipeline's part, that runs `stratus`) and
    in inline code spans; prose and command output are not commands."""
    fenced = False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i]
        i += 1
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            while line.rstrip().endswith("\\") and i < len(lines):
                line = line.rstrip()[:-1].rstrip() + " " + lines[i].strip()
                i += 1
            for match in _MENTION.finditer(line):
                if _SHELL_START.search(line[: match.start()].rstrip(" \t") + " "):
                    yield Mention(f"{where}:{number}", _command_text(line, match.start(), ends=()))
            continue
        for span in re.finditer(r"`([^`]+)`", line):
            code = span.group(1)
            for match in _MENTION.finditer(code):
                if match.start() == 0 or _SHELL_START.search(code[: match.start()]):
                    yield Mention(f"{where}:{number}", _command_text(code, match.start(), ends=()))


def all_mentions() -> list[Mention]:
    found: list[Mention] = []
    for path in sorted((ROOT / "src" / "stratus").rglob("*.py")):
        found += python_mentions(path, str(path.relative_to(ROOT)))
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        found += markdown_mentions(path.read_text(), str(path.relative_to(ROOT)))
    return found


# --- checking --------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote in prose
        return text.split()


def _is_placeholder(token: str) -> bool:
    """NAME, <name>, [OPTIONS], ..., or an f-string's value: stands for what the user types."""
    return (
        HOLE in token
        or token.isupper()
        or token.startswith(("<", "[", "{", "…", "..."))
        or token in ("…", "...")
    )


# Typer's commands are click's (vendored by Typer): groups have `commands`, options
# `param_type_name == "option"`.


def _takes_value(command: Any, name: str) -> bool | None:
    """Whether the option `name` of `command` takes a value; None when it has no such option."""
    if name in ("--help", "-h"):
        return False
    for param in command.params:
        if param.param_type_name == "option" and name in (*param.opts, *param.secondary_opts):
            return not (param.is_flag or param.count)
    return None


def check(root: Any, text: str) -> str | None:
    """What is wrong with the command line `text` (which starts with `stratus`), or None."""
    tokens = _tokens(text)[1:]
    command = root
    path = ["stratus"]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        option = _OPTION.match(token)
        if option:
            takes_value = _takes_value(command, option.group(1))
            if takes_value is None:
                return f"`{' '.join(path)}` has no option {option.group(1)}"
            if takes_value and "=" not in token:
                i += 1  # its value
            continue
        group = hasattr(command, "commands")
        if _is_placeholder(token) or token.startswith("-"):
            if group and HOLE in token:
                return None  # `stratus {group} ...`: the path is not known here
            continue
        if group:
            sub = command.get_command(None, token)  # the root imports its commands on demand
            if sub is None:
                return f"`{' '.join(path)}` has no command {token!r}"
            command = sub
            path.append(token)
    return None


@pytest.fixture(scope="module")
def cli() -> Any:
    from stratus.cli.main import app

    return typer.main.get_command(app)


def test_every_named_command_exists(cli: Any) -> None:
    mentions = all_mentions()
    assert len(mentions) > 100  # the collection found the docs and the messages
    wrong = [
        f"{m.where}: `{m.text}`: {problem}"
        for m in mentions
        if (problem := check(cli, m.text)) is not None
    ]
    assert not wrong, "commands that do not exist:\n" + "\n".join(wrong)


# --- the collector and the checker themselves ------------------------------------------------


def test_collects_from_fstrings_backticks_and_code_blocks(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "KEY = 'stratus audit chain v1'\n"
        "from_ = 'from stratus import training'\n"
        "def f(name):\n"
        "    raise X(f'is capture on (stratus endpoints update {name} --capture 1)?')\n"
        "HELP = '''Show it.\n\n    Example: stratus models show churn:3 -o json\n    '''\n"
        "HINT = 'run `stratus up --demo` first, then stratus predict demo --json x (or -f)'\n"
    )
    assert [(m.where, m.text) for m in python_mentions(module, "m.py")] == [
        ("m.py:4", f"stratus endpoints update {HOLE} --capture 1"),
        ("m.py:7", "stratus models show churn:3 -o json"),
        ("m.py:9", "stratus up --demo"),
        ("m.py:9", "stratus predict demo --json x"),
    ]
    doc = (
        "Run `stratus jobs logs NAME --follow` or `STRATUS_URL=x stratus status`.\n"
        "```bash\n"
        "$ stratus models push churn ./model \\\n"
        "    --flavor sklearn   # a comment\n"
        "stratus data list | head -3 && stratus alerts list\n"
        "2026-11-27  churn-errors  stratus   oncall:ok\n"
        "```\n"
        "The stratus command, in prose, is not code.\n"
    )
    assert [(m.where, m.text) for m in markdown_mentions(doc, "d.md")] == [
        ("d.md:1", "stratus jobs logs NAME --follow"),
        ("d.md:1", "stratus status"),
        ("d.md:3", "stratus models push churn ./model --flavor sklearn"),
        ("d.md:5", "stratus data list"),
        ("d.md:5", "stratus alerts list"),
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stratus endpoints list -p fraud -o json", None),
        ("stratus --url http://127.0.0.1:8700 projects list", None),
        ("stratus deploy churn-api --model churn@production --no-wait", None),
        (f"stratus endpoints history {HOLE}", None),
        ("stratus endpoints show NAME", None),
        ("stratus monitors", None),
        ("stratus predict demo --json '{\"instances\": [[1, 2]]}'", None),
        (
            "stratus endpoints update --capture 1",
            "`stratus endpoints` has no command 'update'",
        ),
        ("stratus endpoint list", "`stratus` has no command 'endpoint'"),
        (
            "stratus endpoints capture churn --sampel 1",
            "`stratus endpoints capture` has no option --sampel",
        ),
        ("stratus endpoints list --url x", "`stratus endpoints list` has no option --url"),
    ],
)
def test_check(cli: Any, text: str, problem: str | None) -> None:
    assert check(cli, text) == problem
