"""The credentials file in the Stratus home: where the CLI and SDK find the platform and key.

Written by `stratus up` (first start) and `stratus login`; JSON, mode 0600, replaced
atomically so a crash never leaves half a file. It holds named profiles, like the AWS CLI's:
the `default` profile is the file's top level (`url`, `api_key` or `token`, `user`,
`project`, and `ca_file`, the CA an https platform's certificate is checked against: the whole
file, as it was before profiles), the others are under `profiles`, and
`current` names the one commands use when neither `--profile` nor `STRATUS_PROFILE` says.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stratus.core.errors import InvalidInput

DEFAULT_URL = "http://127.0.0.1:8700"
DEFAULT_PROFILE = "default"
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def default_home() -> Path:
    return Path(os.environ.get("STRATUS_HOME", "~/.stratus")).expanduser()


@dataclass
class Credentials:
    url: str = DEFAULT_URL
    api_key: str | None = None
    token: str | None = None
    user: str | None = None
    project: str | None = None
    ca_file: str | None = None  # PEM of the CA that signs `url`'s certificate (None: the system's)

    @property
    def secret(self) -> str | None:
        return self.api_key or self.token


@dataclass
class CredentialsFile:
    """Every profile of the file, by name, and the current one's name."""

    profiles: dict[str, Credentials] = field(default_factory=dict)
    current: str = DEFAULT_PROFILE


def check_profile_name(name: str) -> str:
    if not _PROFILE_NAME.fullmatch(name):
        raise InvalidInput(
            f"profile name {name!r} is not valid: use 1 to 63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def credentials_path(home: Path | None = None) -> Path:
    return (home or default_home()) / "credentials"


def local_ca_path(home: Path | None = None) -> Path:
    """Where `stratus up --tls` keeps its local CA's certificate (`stratus.api.tls`)."""
    return (home or default_home()) / "tls" / "ca.pem"


def _credentials_of(data: Any) -> Credentials | None:
    if not isinstance(data, dict):
        return None
    known = {k: data.get(k) for k in Credentials.__dataclass_fields__}
    values = {k: v for k, v in known.items() if isinstance(v, str)}
    return Credentials(**values) if values else None


def load_profiles(home: Path | None = None) -> CredentialsFile:
    """The file's profiles (none when there is no file, or it cannot be read)."""
    try:
        data = json.loads(credentials_path(home).read_text())
    except (OSError, ValueError):
        return CredentialsFile()
    if not isinstance(data, dict):
        return CredentialsFile()
    found = CredentialsFile()
    top = _credentials_of(data)
    if top is not None:
        found.profiles[DEFAULT_PROFILE] = top
    others = data.get("profiles")
    if isinstance(others, dict):
        for name, value in others.items():
            creds = _credentials_of(value)
            if isinstance(name, str) and name != DEFAULT_PROFILE and creds is not None:
                found.profiles[name] = creds
    current = data.get("current")
    if isinstance(current, str) and current:
        found.current = current
    return found


def chosen_profile(profile: str | None = None) -> str | None:
    """The profile asked for: `profile`, else `STRATUS_PROFILE` (None: the file's current)."""
    return profile or os.environ.get("STRATUS_PROFILE") or None


def read_credentials(home: Path | None = None, profile: str | None = None) -> Credentials | None:
    """One profile's credentials: `profile`, else `STRATUS_PROFILE`, else the file's current
    profile; None when the file has no such profile."""
    found = load_profiles(home)
    return found.profiles.get(chosen_profile(profile) or found.current)


def save_profiles(found: CredentialsFile, home: Path | None = None) -> Path:
    """Write every profile (the default one at the top level), mode 0600, atomically."""
    data: dict[str, Any] = {}
    default = found.profiles.get(DEFAULT_PROFILE)
    if default is not None:
        data.update({k: v for k, v in asdict(default).items() if v is not None})
    others = {
        name: {k: v for k, v in asdict(creds).items() if v is not None}
        for name, creds in sorted(found.profiles.items())
        if name != DEFAULT_PROFILE
    }
    if others:
        data["profiles"] = others
    if found.current != DEFAULT_PROFILE:
        data["current"] = found.current
    path = credentials_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_credentials(
    creds: Credentials,
    home: Path | None = None,
    profile: str = DEFAULT_PROFILE,
    *,
    make_current: bool = False,
) -> Path:
    """Save one profile (the others stay as they are); `make_current` makes it the one
    commands use from now on."""
    check_profile_name(profile)
    found = load_profiles(home)
    found.profiles[profile] = creds
    if make_current:
        found.current = profile
    return save_profiles(found, home)
