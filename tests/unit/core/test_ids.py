"""Identifiers: time-ordered, unique, and safe in URLs."""

from __future__ import annotations

import re
import threading
import time

from stratus.core.ids import _ALPHABET, new_id, new_request_id, new_secret

ID_RE = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")


def _millis(id_: str) -> int:
    value = 0
    for ch in id_[:10]:
        value = value * 32 + _ALPHABET.index(ch)
    return value


def test_alphabet_is_crockford_base32_lower_case() -> None:
    assert len(_ALPHABET) == 32 == len(set(_ALPHABET))
    assert not set("ilou") & set(_ALPHABET)
    assert list(_ALPHABET) == sorted(_ALPHABET)  # so string order is numeric order


def test_shape() -> None:
    id_ = new_id()
    assert ID_RE.match(id_), id_


def test_prefix_is_prepended() -> None:
    id_ = new_id("v")
    assert id_.startswith("v") and ID_RE.match(id_[1:])


def test_time_part_is_the_clock_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    id_ = new_id()
    after = time.time_ns() // 1_000_000
    # ids are monotonic, so the time part may run ahead of the clock by a little at most
    assert before <= _millis(id_) <= after + 1000


def test_ten_thousand_in_a_tight_loop_are_strictly_increasing() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert all(len(i) == 26 for i in ids)


def test_ids_sort_by_creation_time() -> None:
    first = new_id()
    time.sleep(0.005)
    second = new_id()
    assert first < second
    assert _millis(first) < _millis(second)


def test_unique_and_increasing_across_threads() -> None:
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        for _ in range(2_000):
            out.append(new_id())

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in per_thread for i in out]
    assert len(set(everything)) == len(everything)
    for out in per_thread:
        assert out == sorted(out) and len(set(out)) == len(out)


def test_request_ids() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for rid in ids:
        assert re.fullmatch(r"req-[0-9a-f]{16}", rid)


def test_secrets_are_url_safe_and_unique() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    for s in secrets:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", s)
    assert len(new_secret(8)) == 11
