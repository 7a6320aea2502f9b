"""The credentials file in the Stratus home: where the CLI and SDK find the platform and key.

Written by `stratus up` (first start) and `stratus login`; JSON, mode 0600, replaced
atomically so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8700"


def default_home() -> Path:
    return Path(os.environ.get("STRATUS_HOME", "~/.stratus")).expanduser()


@dataclass
class Credentials:
    url: str = DEFAULT_URL
    api_key: str | None = None
    token: str | None = None
    user: str | None = None
    project: str | None = None

    @property
    def secret(self) -> str | None:
        return self.api_key or self.token


def credentials_path(home: Path | None = None) -> Path:
    return (home or default_home()) / "credentials"


def read_credentials(home: Path | None = None) -> Credentials | None:
    path = credentials_path(home)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    known = {k: data.get(k) for k in Credentials.__dataclass_fields__}
    return Credentials(**{k: v for k, v in known.items() if v is not None})


def write_credentials(creds: Credentials, home: Path | None = None) -> Path:
    path = credentials_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({k: v for k, v in asdict(creds).items() if v is not None}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
