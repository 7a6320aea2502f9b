"""docs/sdk.md runs as written: its Python blocks, in order, as one script from a scratch
folder against a fresh platform of its own (the guide makes a project, a user, keys, a
dataset, a job, models, an endpoint, a monitor, an alert rule and a pipeline run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stratus.testing import LocalPlatform

DOCS = Path(__file__).resolve().parents[2] / "docs"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def python_blocks(doc: Path) -> list[str]:
    return [m.group(2) for m in _FENCE.finditer(doc.read_text()) if m.group(1) == "python"]


@pytest.mark.slow  # a training job, a pipeline run and a deploy: a couple of minutes
@pytest.mark.timeout(1500)
def test_the_sdk_guide_runs(own_platform: LocalPlatform, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")
    blocks = python_blocks(DOCS / "sdk.md")
    assert len(blocks) >= 10, "docs/sdk.md lost its examples"
    script = tmp_path / "guide.py"
    script.write_text("\n".join(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env.update(own_platform.cli_env())
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
