"""Resource limits on a job process: cgroup v2 where this process may create cgroups, else
rlimits and CPU affinity. The local backend plans the limits here and applies them in the
child before it execs the job's program; the method used is reported with the job.

cgroup v2 (`"cgroup-v2"`): a child cgroup `stratus-job-<id>` with `memory.max` (the instance's
memory; swap off; on OOM the whole job is killed) and `cpu.max` (a quota of `vcpus` CPUs). It
bounds the job and everything it starts, together, and `memory.events` says if it was OOM-killed.

rlimits (`"rlimit+affinity"`, or `"rlimit"` where affinity is unavailable): each process of
the job gets RLIMIT_DATA = the instance's memory, and the job is pinned to ceil(vcpus) of the
CPUs this control plane may use. RLIMIT_DATA, not RLIMIT_AS: it counts the heap and private
writable mappings (numpy arrays included) but not the code of shared libraries or reserved,
untouched address space (PROT_NONE malloc arenas). Measured with Python 3.11, numpy 2 and
scikit-learn (OpenBLAS sizes its per-thread buffers by the CPUs a process may use), the least
limit under which `import numpy, sklearn` works is:

    CPUs allowed   RLIMIT_AS   RLIMIT_DATA
    1              ~428 MiB    ~203 MiB
    2              ~508 MiB    ~283 MiB

so under RLIMIT_AS a `cpu.nano` job (0.5 GiB) could barely import its libraries, while
RLIMIT_DATA leaves it ~300 MiB to work with. Going over it shows as a MemoryError (or a failed
mmap) in the job, not a kill; rlimits bound each process, not the job's processes together.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CGROUP_V2 = "cgroup-v2"
RLIMIT_AFFINITY = "rlimit+affinity"
RLIMIT = "rlimit"

CGROUP_PREFIX = "stratus-job-"
CPU_PERIOD_US = 100_000
_NEEDED_CONTROLLERS = frozenset({"cpu", "memory"})
_CGROUP2_FALLBACK_MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))

log = logging.getLogger("stratus.compute.limits")
# the last line of a traceback of MemoryError or a subclass (numpy's `..._ArrayMemoryError`)
_MEMORY_ERROR = re.compile(r"[\w.]*MemoryError\b")


@dataclass(frozen=True)
class Resources:
    """What a job may use (or a backend has): CPUs (fractions allowed), memory, GPUs."""

    vcpus: float
    memory_bytes: int
    gpus: int = 0


@dataclass(frozen=True)
class LimitPlan:
    """How one job will be limited; the child applies it before it execs the job."""

    enforcement: str
    cgroup: Path | None = None  # the job's cgroup, which the child joins
    memory_rlimit: int | None = None  # RLIMIT_DATA, in bytes
    cpus: tuple[int, ...] | None = None  # the CPU affinity


# --- cgroup v2 -------------------------------------------------------------------------------


def _own_cgroup_v2_path() -> str | None:
    """This process's cgroup v2 path ("0::/path" in /proc/self/cgroup)."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            path = line[3:]
            return None if path.endswith(" (deleted)") else path
    return None


def _cgroup2_mounts() -> list[Path]:
    mounts = []
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "cgroup2":
                mounts.append(Path(fields[1].replace("\\040", " ")))
    except OSError:
        pass
    return mounts or [m for m in _CGROUP2_FALLBACK_MOUNTS if (m / "cgroup.controllers").exists()]


def _words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def usable_cgroup_v2_dir(mount: Path, own: str) -> Path | None:
    """The nearest cgroup, from this process's own (`own`, under `mount`) up to the mount,
    that hands the cpu and memory controllers to its children and that this process may
    create children in and move processes into; None if there is none."""
    start = mount / own.lstrip("/")
    if not start.is_dir():
        return None  # a different hierarchy or cgroup namespace
    for directory in [start, *start.parents]:
        if _NEEDED_CONTROLLERS <= _words(directory / "cgroup.subtree_control") and os.access(
            directory, os.W_OK | os.X_OK
        ):
            if os.access(directory / "cgroup.procs", os.W_OK):
                return directory
        if directory == mount:
            break
    return None


def cgroup_v2_root() -> Path | None:
    """A writable cgroup v2 directory in which jobs get their cgroups, with the `cpu` and
    `memory` controllers enabled for its children; None when cgroup v2 is not usable here
    (a v1 or hybrid host without those controllers in v2, a read-only mount, no permission).

    Reads /proc and /sys only: no side effects.
    """
    own = _own_cgroup_v2_path()
    if own is None:
        return None
    for mount in _cgroup2_mounts():
        found = usable_cgroup_v2_dir(mount, own)
        if found is not None:
            return found
    return None


def create_cgroup(root: Path, job_id: str, resources: Resources) -> Path:
    """Make (or reuse an empty) `root/stratus-job-<id>` with the job's memory and CPU limits.

    Raises:
        OSError: the cgroup could not be made or limited (it is removed again).
    """
    path = root / f"{CGROUP_PREFIX}{job_id}"
    path.mkdir(exist_ok=True)
    try:
        (path / "memory.max").write_text(str(resources.memory_bytes))
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")
        if (path / "memory.oom.group").exists():
            (path / "memory.oom.group").write_text("1")  # an OOM kill takes the whole job
        quota = max(1000, round(resources.vcpus * CPU_PERIOD_US))
        (path / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
    except OSError:
        remove_cgroup(path)
        raise
    return path


def _populated(path: Path) -> bool:
    try:
        for line in (path / "cgroup.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() == "1"
    except OSError:
        return False
    return False


def remove_cgroup(path: Path, wait_seconds: float = 2.0) -> None:
    """Kill what is left in a job's cgroup and remove it; quietly, if it is already gone."""
    if not path.name.startswith(CGROUP_PREFIX) or not path.is_dir():
        return
    if _populated(path) and (path / "cgroup.kill").exists():
        try:
            (path / "cgroup.kill").write_text("1")
        except OSError:
            pass
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def oom_killed(cgroup: Path | None, log_tail: str) -> bool:
    """Whether a job that exited died of its memory limit, as far as can be told: the kernel's
    count of OOM kills in its cgroup, else (rlimits) a MemoryError reported at the end of its
    log."""
    if cgroup is not None:
        try:
            for line in (cgroup / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        except (OSError, ValueError):
            pass
        return False
    return any(_MEMORY_ERROR.match(line) for line in log_tail.splitlines()[-5:])


# --- rlimits and affinity --------------------------------------------------------------------


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def choose_cpus(vcpus: float, allowed: Iterable[int], busy: Mapping[int, int]) -> tuple[int, ...]:
    """ceil(vcpus) of the `allowed` CPUs (at least one, at most all), the least busy first.

    Args:
        vcpus: the job's CPUs; a fraction takes a whole CPU.
        allowed: the CPUs jobs may use.
        busy: how many running jobs each CPU already serves.
    """
    cpus = sorted(set(allowed))
    if not cpus:
        raise ValueError("no CPUs to choose from")
    count = min(len(cpus), max(1, math.ceil(vcpus)))
    return tuple(sorted(sorted(cpus, key=lambda cpu: (busy.get(cpu, 0), cpu))[:count]))


def plan_limits(
    job_id: str,
    resources: Resources,
    cgroup_root: Path | None,
    busy: Mapping[int, int],
) -> LimitPlan:
    """How to limit a job: in a new cgroup under `cgroup_root` when given, else by rlimits and
    affinity. Creating the cgroup is the only side effect; should it fail, rlimits are used.
    """
    if cgroup_root is not None:
        try:
            return LimitPlan(CGROUP_V2, cgroup=create_cgroup(cgroup_root, job_id, resources))
        except OSError as exc:
            log.warning("cannot limit job %s with a cgroup under %s (%s); using rlimits",
                        job_id, cgroup_root, exc)  # fmt: skip
    if not hasattr(os, "sched_setaffinity"):
        return LimitPlan(RLIMIT, memory_rlimit=resources.memory_bytes)
    cpus = choose_cpus(resources.vcpus, allowed_cpus(), busy)
    return LimitPlan(RLIMIT_AFFINITY, memory_rlimit=resources.memory_bytes, cpus=cpus)
