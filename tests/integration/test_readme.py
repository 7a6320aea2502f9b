"""The README runs as written.

Its Python — the ```python blocks, and the `python - <<'PY'` and `python -c` snippets of its
shell blocks — runs in the tour's order in a folder of its own, with the few `stratus`
commands of the tour whose results that Python reads (the project, the dataset the tracking
example names, the pushed model and its alias) run before it as the README orders them:
against a platform started with `stratus up --tls`, every certificate verified (and against
the plain-http session platform as a slow test). The `stratus.testing` example runs as a
pytest session of its own. Every `stratus …` command of the shell blocks parses against the
CLI: its options, their values and its arguments (another test checks that the commands the
docs and errors name exist).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import typer

from stratus.testing import LocalPlatform

README = Path(__file__).resolve().parents[2] / "README.md"

#: The tour's commands whose results the README's Python reads, in the README's order; each
#: is the first command of the README that starts with it, run as written.
PREREQUISITES = (
    "stratus projects create fraud",  # every example works in the project fraud
    "stratus data push cancer.csv --dataset cancer",  # cancer:1, the tracking example's data
    "stratus models push model.skops -n cancer",  # cancer:1, before "The same from Python"
    "stratus models alias cancer:1 production",  # what "The same from Python" deploys
)
SNIPPET_TIMEOUT = 240.0

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?")
_PLACEHOLDER = re.compile(r"<[A-Za-z][^<>\n]*>")  # <RUN id>, <VERSION id from above>
_OPERATORS = {"|", "||", "&", "&&", ";", ";;", "(", ")", ">", ">>", "<", "<<", "<<<", ">&", "<&"}
_KEYWORDS = {"do", "then", "else", "time", "!", "{", "}", "exec"}


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # where the block's first line is in the README


@dataclass(frozen=True)
class Step:
    kind: str  # "python" (code to run) or "cli" (a stratus command's arguments)
    line: int
    code: str = ""
    args: tuple[str, ...] = ()


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start(2)) + 1)
        for m in _FENCE.finditer(text)
    ]


def shell_lines(block: Block) -> Iterator[tuple[int, str, str | None]]:
    """(README line, logical line, heredoc body or None) of a shell block: continuation lines
    joined, each heredoc's body given with the line that opens it and never as lines."""
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].lstrip()
        i += 1
        body = None
        heredoc = _HEREDOC.search(line)
        if heredoc:
            end = next(
                (j for j in range(i, len(lines)) if lines[j].strip() == heredoc.group(1)),
                len(lines),
            )
            body, i = "\n".join(lines[i:end]) + "\n", end + 1
        yield block.line + start, line, body


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line: split at pipes, lists, subshells, `$(…)` and
    redirections; variable assignments and keywords in front dropped; comments left out."""
    lexer = shlex.shlex(_PLACEHOLDER.sub("PLACEHOLDER", line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    after_redirect = False
    for token in lexer:
        if token in _OPERATORS or token == "$":
            after_redirect = token in {">", ">>", "<", "<<<", ">&", "<&"}
            commands.append([])
            continue
        if after_redirect:  # the redirection's target, not a word of a command
            after_redirect = False
            continue
        current = commands[-1]
        if not current and (token in _KEYWORDS or re.fullmatch(r"\w+=.*", token)):
            continue
        current.append(token)
    return [c for c in commands if c]


def stratus_commands() -> list[tuple[int, list[str]]]:
    found = []
    for block in readme_blocks():
        if block.language not in ("sh", "bash", "shell", "console"):
            continue
        for line_no, line, _ in shell_lines(block):
            for command in simple_commands(line.removeprefix("$ ")):
                if command[0] == "stratus":
                    found.append((line_no, command[1:]))
    return found


def tour() -> list[Step]:
    """The README's Python and its prerequisite commands, in the README's order."""
    steps: list[Step] = []
    wanted = list(PREREQUISITES)
    for block in readme_blocks():
        if block.language == "python":
            if "pytest_plugins" not in block.text:  # the stratus.testing example: see below
                steps.append(Step("python", block.line, code=block.text))
            continue
        if block.language not in ("sh", "bash", "shell"):
            continue
        for line_no, line, body in shell_lines(block):
            command = line.split("#", 1)[0].strip() if body is None else line.strip()
            if body is not None and re.match(r"python3? -(\s|$)", command):
                steps.append(Step("python", line_no, code=body))
            elif re.match(r"python3? -c ", command):
                steps.append(Step("python", line_no, code=shlex.split(command)[2]))
            elif wanted and command.startswith(wanted[0]):
                steps.append(Step("cli", line_no, args=tuple(shlex.split(command)[1:])))
                wanted.pop(0)
    assert not wanted, f"the README no longer has these tour commands: {wanted}"
    return steps


def platform_env(platform: LocalPlatform) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    return {**env, **platform.cli_env()}


def run_python(code: str, cwd: Path, env: dict[str, str], where: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"


# --- the shell blocks' commands parse --------------------------------------------------------


def parse(command: click.Command, args: list[str], parent: click.Context | None = None) -> None:
    """Parse `args` as the CLI would, down to the leaf command, without running anything."""
    name = command.name or "stratus"
    if isinstance(command, click.Group):
        ctx = command.context_class(command, info_name=name, parent=parent)
        with ctx.scope(cleanup=False):
            rest = click.Command.parse_args(command, ctx, list(args))
            if not rest:
                raise click.UsageError(f"`{name}` needs a command", ctx)
            _, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None
        parse(sub, rest, ctx)
        return
    with command.make_context(name, list(args), parent=parent):
        pass


def test_the_readme_shell_commands_parse() -> None:
    from stratus.cli.main import app

    root = typer.main.get_command(app)
    commands = stratus_commands()
    assert len(commands) > 50, "the README's shell blocks were not read"
    failures = []
    for line, args in commands:
        try:
            parse(root, args)
        except click.ClickException as exc:
            failures.append(f"README.md:{line}: stratus {shlex.join(args)}: {exc.format_message()}")
    assert not failures, "\n".join(failures)


def test_the_readme_toml_is_settings() -> None:
    from stratus.core.settings import Settings

    (block,) = [b for b in readme_blocks() if b.language == "toml"]
    for section, values in tomllib.loads(block.text).items():
        group = Settings.model_fields[section].annotation
        assert group is not None
        unknown = set(values) - set(group.model_fields)
        assert not unknown, f"stratus.toml section [{section}] has no {unknown}"


# --- the Python runs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    """A platform of its own started with `stratus up --tls` (a local CA in its home)."""
    with LocalPlatform(tmp_path_factory.mktemp("https-home"), tls=True) as platform:
        yield platform


@pytest.mark.timeout(1200)
def test_the_readme_tour_runs_over_verified_https(
    https_platform: LocalPlatform, tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tour as a user runs it after `stratus up --tls`: every command and every snippet
    over https, the certificate verified against the platform's CA (`STRATUS_CA_FILE`)."""
    assert https_platform.url.startswith("https://")
    run_tour(https_platform, tmp_path, run_cli, monkeypatch)


@pytest.mark.slow  # the same tour over plain http: three model fits, pushes, a deploy
@pytest.mark.timeout(1200)
def test_the_readme_python_runs_in_the_tours_order(
    platform: LocalPlatform, tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_tour(platform, tmp_path, run_cli, monkeypatch)


def run_tour(
    platform: LocalPlatform, tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")  # `make run` installs it for the ONNX example
    env = platform_env(platform)
    monkeypatch.chdir(tmp_path)
    steps = tour()
    assert sum(step.kind == "python" for step in steps) >= 4
    for step in steps:
        where = f"README.md:{step.line}"
        started = time.monotonic()
        if step.kind == "cli":
            result = run_cli(*step.args, env=platform.cli_env())
            assert result.code == 0, f"{where}: stratus {shlex.join(step.args)}: {result.stderr}"
        else:
            run_python(step.code, tmp_path, env, where)
        print(f"{where}: {step.kind} step ran in {time.monotonic() - started:.1f} s")


def test_the_readme_testing_example_runs(tmp_path: Path) -> None:
    """The Development section's conftest.py and test_mine.py, as a pytest session of their
    own (with the throwaway platform they start)."""
    (block,) = [b for b in readme_blocks() if "pytest_plugins" in b.text]
    files = re.split(r"^# (\S+\.py)\n", block.text, flags=re.M)
    assert files[0].strip() == "" and len(files) == 5, "expected # conftest.py and # test_mine.py"
    for name, code in zip(files[1::2], files[2::2], strict=True):
        (tmp_path / name).write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "1 passed" in done.stdout
