"""The master keys one control plane holds, by check value: the key the database names, and
while a rotation runs the key it moves to.

The keyring unwraps a data key under whichever of them wrapped it, so a read never waits for a
rotation and never fails for one; new data keys are wrapped under the newest. The files are
`master.key` and, during a rotation, `master.key.next` beside it (`KeyFiles`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from stratus.core.errors import DataCorrupted, InvalidInput
from stratus.storage.encryption import read_key_file, unwrap_key, wrap_key
from stratus.storage.key_check import check_value

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyFiles:
    """Where the master key is kept: `current` (master.key) and the next key a rotation
    writes beside it before it uses it."""

    current: Path

    @property
    def next(self) -> Path:
        return self.current.with_name(self.current.name + ".next")

    def read_next(self) -> bytes | None:
        """The next key, if its file is there (a rotation under way, or one that stopped);
        an unreadable one is left alone, and said so."""
        try:
            return read_key_file(self.next)
        except FileNotFoundError:
            return None
        except (OSError, InvalidInput) as exc:
            log.warning("ignoring the next master key file %s: %s", self.next, exc)
            return None


class MasterKeys:
    """The master keys known to this process; thread-safe."""

    def __init__(self, current: bytes, *others: bytes) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._current = self.add(current)
        self._wrapping = self._current
        for key in others:
            self.add(key)

    def add(self, key: bytes) -> str:
        """Know `key` too (to unwrap what it wrapped); returns its check value."""
        check = check_value(key)
        with self._lock:
            self._keys[check] = key
        return check

    @property
    def current(self) -> bytes:
        with self._lock:
            return self._keys[self._current]

    @property
    def current_check(self) -> str:
        return self._current

    def by_check(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._keys)

    def key(self, check: str) -> bytes | None:
        with self._lock:
            return self._keys.get(check)

    def wrap_with(self, check: str) -> None:
        """Wrap new data keys under the known key of this check value from now on."""
        with self._lock:
            if check not in self._keys:
                raise KeyError(check)
            self._wrapping = check

    def promote(self, check: str) -> None:
        """The key of this check value is the master key now; the others are forgotten."""
        with self._lock:
            key = self._keys[check]
            self._keys = {check: key}
            self._current = self._wrapping = check

    def wrap(self, data_key: bytes, key_id: str) -> tuple[bytes, str]:
        """`data_key` wrapped under the newest master key, and that key's check value."""
        with self._lock:
            check = self._wrapping
            master = self._keys[check]
        return wrap_key(master, data_key, key_id), check

    def unwrap(self, wrapped: bytes, key_id: str, wrapped_by: str | None) -> bytes:
        """The data key, unwrapped under the key that wrapped it (`wrapped_by`; None: the
        master key of before rotations), trying the others should that not be known."""
        with self._lock:
            named = self._keys.get(wrapped_by or self._current)
            candidates = [named] if named is not None else []
            candidates += [k for k in self._keys.values() if k is not named]
        failure: DataCorrupted | None = None
        for master in candidates:
            try:
                return unwrap_key(master, wrapped, key_id)
            except DataCorrupted as exc:
                failure = exc
        assert failure is not None  # there is always a current key
        raise failure
