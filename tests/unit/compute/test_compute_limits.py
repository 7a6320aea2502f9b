"""Resource-limit planning: which CPUs a job gets, where cgroup v2 is usable (on a fake cgroup
tree), how OOM kills are recognised, and the rlimit fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stratus.compute import limits
from stratus.compute.limits import Resources


@pytest.mark.parametrize(
    ("vcpus", "allowed", "busy", "expected"),
    [
        (1, [0, 1, 2, 3], {}, (0,)),
        (0.5, [0, 1], {}, (0,)),  # a fraction takes a whole CPU
        (1.5, [0, 1, 2], {}, (0, 1)),
        (2, [4, 5, 6], {4: 1}, (5, 6)),  # the least busy first
        (1, [0, 1], {0: 2, 1: 1}, (1,)),
        (16, [0, 1], {}, (0, 1)),  # capped to what there is
        (3, [2, 0, 1], {0: 1, 1: 1, 2: 1}, (0, 1, 2)),
    ],
)
def test_choose_cpus(
    vcpus: float, allowed: list[int], busy: dict[int, int], expected: tuple[int, ...]
) -> None:
    assert limits.choose_cpus(vcpus, allowed, busy) == expected


def test_choose_cpus_needs_some() -> None:
    with pytest.raises(ValueError):
        limits.choose_cpus(1, [], {})


def _cgroup(path: Path, subtree: str = "", controllers: str = "cpu memory pids") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.subtree_control").write_text(subtree + "\n")
    (path / "cgroup.procs").write_text("")
    return path


def test_a_usable_cgroup_is_the_nearest_one_handing_cpu_and_memory_down(tmp_path: Path) -> None:
    mount = _cgroup(tmp_path, "cpu memory pids")
    _cgroup(tmp_path / "service.slice", "memory pids")  # no cpu for its children
    _cgroup(tmp_path / "service.slice" / "stratus.service")  # ours, with processes
    own = "/service.slice/stratus.service"
    assert limits.usable_cgroup_v2_dir(mount, own) == mount
    _cgroup(tmp_path / "service.slice", "cpu memory pids")
    assert limits.usable_cgroup_v2_dir(mount, own) == tmp_path / "service.slice"


def test_no_usable_cgroup_without_the_controllers(tmp_path: Path) -> None:
    # like this host's hybrid /sys/fs/cgroup/unified: v2 mounted, its controllers all in v1
    mount = _cgroup(tmp_path, "", controllers="hugetlb")
    assert limits.usable_cgroup_v2_dir(mount, "/") is None
    assert limits.usable_cgroup_v2_dir(mount, "/elsewhere") is None  # not in this hierarchy


def test_cgroup_v2_root_is_a_directory_or_none() -> None:
    root = limits.cgroup_v2_root()
    assert root is None or (root / "cgroup.subtree_control").exists()
    unified = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if unified.exists() and "memory" not in unified.read_text().split():
        assert root is None  # a hybrid host: cgroup v2 without the memory controller


def test_the_rlimit_plan_when_no_cgroup(tmp_path: Path) -> None:
    plan = limits.plan_limits("j", Resources(vcpus=1, memory_bytes=2**28), None, {})
    assert plan.enforcement == limits.RLIMIT_AFFINITY and plan.cgroup is None
    assert plan.memory_rlimit == 2**28
    assert plan.cpus is not None and len(plan.cpus) == 1
    assert set(plan.cpus) <= os.sched_getaffinity(0)


def test_a_cgroup_plan_falls_back_to_rlimits_when_the_cgroup_cannot_be_made(
    tmp_path: Path,
) -> None:
    plan = limits.plan_limits("j", Resources(1, 2**28), tmp_path / "missing", {})
    assert plan.enforcement == limits.RLIMIT_AFFINITY
    assert not (tmp_path / "missing").exists()


def test_create_cgroup_writes_the_limits(tmp_path: Path) -> None:
    # a plain folder stands in for a cgroup: the limit files are written as the kernel reads them
    path = limits.create_cgroup(tmp_path, "job-1", Resources(vcpus=1.5, memory_bytes=2**30))
    assert path == tmp_path / "stratus-job-job-1"
    assert (path / "memory.max").read_text() == str(2**30)
    assert (path / "cpu.max").read_text() == "150000 100000"


def test_oom_killed(tmp_path: Path) -> None:
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    assert limits.oom_killed(tmp_path, "")
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    assert not limits.oom_killed(tmp_path, "MemoryError")  # the cgroup knows better
    assert not limits.oom_killed(tmp_path / "gone", "")
    traceback = 'Traceback (most recent call last):\n  File "x.py"\nMemoryError\n'
    assert limits.oom_killed(None, traceback)
    numpy = "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 1.00 GiB\n"
    assert limits.oom_killed(None, traceback.replace("MemoryError\n", numpy))
    assert not limits.oom_killed(None, "ValueError: MemoryError mentioned\n")
