"""The SDK's functions API: one Python file with a `predict(batch)` (and an optional `load()`)
served like a cloud function, through the registry and the endpoints that already exist.

A function NAME is the model NAME (python flavor, trusted) and the endpoint NAME at min 0
replicas, both labelled `stratus.io/kind=function`. `deploy` pushes the file as `predictor.py`
in a new version, or reuses the latest version when its files are the same, then creates the
endpoint or rolls it over to that version. docs/functions.md has the handler contract.
"""

from __future__ import annotations

import builtins
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus.client._base import API, local_files
from stratus.client._endpoints import main_variant
from stratus.client._inference import Prediction
from stratus.core.errors import Conflict, InvalidInput, NotFound, StratusError
from stratus.core.resource_schemas import validate_name
from stratus.endpoints import schemas as ep
from stratus.registry import schemas as rg
from stratus.registry.flavors.python_source import ENTRY_POINT, source_problem

KIND_LABEL = "stratus.io/kind"
LABELS = {KIND_LABEL: "function"}
SELECTOR = f"{KIND_LABEL}=function"
SOURCE_TAG = "stratus.io/source"  # on each version: the file it was deployed from

DEFAULT_MAX_REPLICAS = 4
DEFAULT_TARGET_CONCURRENCY = 4.0
DEFAULT_SCALE_TO_ZERO_AFTER = 300.0


@dataclass(frozen=True)
class Deployment:
    """What `Functions.deploy` did.

    Attributes:
        endpoint: the function's endpoint, as written (or, with `wait`, once ready).
        version: the model version it serves.
        pushed: False when the latest version already held these files and serves again.
    """

    endpoint: ep.EndpointRead
    version: rg.VersionRead
    pushed: bool


def is_function(labels: Mapping[str, str]) -> bool:
    return labels.get(KIND_LABEL) == LABELS[KIND_LABEL]


class Functions(API):
    """Functions: `deploy` a file, `list`, `get`, `invoke`, `delete`."""

    def deploy(
        self,
        name: str,
        file: str | Path,
        *,
        project: str | None = None,
        include: Sequence[str | Path] = (),
        max_replicas: int | None = None,
        target_concurrency: float | None = None,
        scale_to_zero_after_seconds: float | None = None,
        public: bool | None = None,
        sample: Any = None,
        description: str = "",
        wait: bool = False,
        timeout: float = 120.0,
    ) -> Deployment:
        """Deploy the Python file `file` as the function `name`, in one call.

        The file becomes `predictor.py` of a new version of the model `name` (python flavor,
        trusted: you own the code), and the endpoint `name` serves that version at 0 to
        `max_replicas` replicas: created, or rolled over. The latest version is reused when
        its files are the same, so deploying an unchanged file again changes nothing.

        Args:
            name: the function's name (a DNS label): its model's and its endpoint's.
            file: a Python file defining `predict(batch)` (and optionally `load()`), or
                `class Predictor`; checked for syntax and for `predict` before any upload.
            project: the project (default: the client's).
            include: more files or folders to ship beside it, under their own names (say
                weights that `load(path)` reads from the artifact folder `path`).
            max_replicas: the most replicas under load; None keeps the current setting
                (4 for a new function).
            target_concurrency: requests in flight per replica; None keeps it (default 4).
            scale_to_zero_after_seconds: idle seconds before the last replica stops; None
                keeps it (default 300).
            public: callable without a credential; None keeps it (a new function is private).
            sample: rows that infer the version's signature (see `models.push`).
            description: the new version's description (default: the file's name).
            wait: return once the endpoint serves the version (see `endpoints.wait_ready`).
            timeout: seconds to wait when `wait` is true.

        Returns:
            The endpoint, the version it serves, and whether that version was pushed now.

        Raises:
            stratus.errors.InvalidInput: the file is missing, not UTF-8, not valid Python, or
                defines no `predict`; an included path is missing or clashes; the name is
                not a DNS label.
            stratus.errors.Conflict: a model or endpoint `name` exists that is no function.
            stratus.errors.PermissionDenied: the caller may not mark a version trusted (only
                the project's owners may).
            stratus.errors.ModelLoadError: the file does not load (`load` raised, or an
                import failed); nothing is registered then.
        """
        validate_name(name, "function name")
        source = Path(file)
        check_handler(source)
        with tempfile.TemporaryDirectory(prefix="stratus-function-") as scratch:
            folder = package(source, include, Path(scratch))
            endpoint = self._existing(self._c.endpoints.get, "endpoint", name, project)
            model = self._existing(self._c.models.get, "model", name, project)
            version, pushed = self._version(
                name,
                folder,
                source.name,
                new=model is None,
                project=project,
                sample=sample,
                description=description,
            )
        scaling = scaling_of(
            endpoint,
            max_replicas=max_replicas,
            target_concurrency=target_concurrency,
            scale_to_zero_after_seconds=scale_to_zero_after_seconds,
        )
        ref = f"{name}:{version.version}"
        reason = f"function deployed from {source.name}"
        if endpoint is None:
            variant = {"name": "main", "model": ref, "autoscaling": scaling}
            written = self._c.endpoints.create(
                name,
                [variant],
                project=project,
                labels=LABELS,
                public=bool(public),
                reason=reason,
            )
        else:
            written = self._c.endpoints.deploy(
                name, ref, autoscaling=scaling, project=project, public=public, reason=reason
            )
        if wait:
            written = self._c.endpoints.wait_ready(name, timeout=timeout, project=project)
        return Deployment(endpoint=written, version=version, pushed=pushed)

    def list(
        self, project: str | None = None, *, all_projects: bool = False
    ) -> builtins.list[ep.EndpointRead]:
        """The project's functions (their endpoints, labelled `stratus.io/kind=function`)."""
        return self._c.endpoints.list(project, SELECTOR, all_projects=all_projects)

    def get(self, name: str, project: str | None = None) -> ep.EndpointRead:
        """A function's endpoint: its version, autoscaling, phase and replicas.

        Raises:
            stratus.errors.NotFound: no function of that name (an endpoint that is not a
                function does not count).
        """
        endpoint = self._c.endpoints.get(name, project)
        if not is_function(endpoint.metadata.labels):
            raise self._missing(name, project)
        return endpoint

    def invoke(self, name: str, data: Any, *, project: str | None = None) -> Prediction:
        """Call the function through the gateway (a function at zero replicas starts one).

        Args:
            name: the function's name.
            data: rows (a list of lists or of {column: value} objects, a DataFrame, an array),
                or a request body as a dict (e.g. `{"instances": [...]}`), sent as it is.
            project: the project (default: the client's).

        Returns:
            A `Prediction`: one prediction per row, and which version answered.
        """
        if isinstance(data, Mapping):
            return self._c.endpoints.predict(name, body=dict(data), project=project)
        return self._c.endpoints.predict(name, data, project=project)

    def delete(self, name: str, project: str | None = None) -> None:
        """Delete a function: its endpoint (the replicas drain and stop), then its model and
        every version.

        Raises:
            stratus.errors.NotFound: no function of that name.
        """
        endpoint = self._existing(self._c.endpoints.get, "endpoint", name, project)
        model = self._existing(self._c.models.get, "model", name, project)
        if endpoint is None and model is None:
            raise self._missing(name, project)
        if endpoint is not None:
            self._c.endpoints.delete(name, project)
        if model is not None:
            self._c.models.delete(name, project, force=True)

    # --- helpers ---------------------------------------------------------------------------------

    def _missing(self, name: str, project: str | None) -> NotFound:
        where = project or self._c.default_project
        return NotFound(f"no function {name!r} in project {where!r}: see `stratus functions list`")

    def _existing(
        self, get: Callable[[str, str | None], Any], what: str, name: str, project: str | None
    ) -> Any:
        """The model or endpoint `name`, None when there is none; Conflict when it is there
        but is no function (a function never takes over what was made otherwise)."""
        try:
            found = get(name, project)
        except NotFound:
            return None
        if not is_function(found.metadata.labels):
            raise Conflict(
                f"{what} {name!r} exists and is not a function: pick another name, or delete "
                f"the {what} first"
            )
        return found

    def _version(
        self,
        name: str,
        folder: Path,
        source: str,
        *,
        new: bool,
        project: str | None,
        sample: Any,
        description: str,
    ) -> tuple[rg.VersionRead, bool]:
        """The version to serve, and whether it was pushed now: the latest when it holds the
        same files, else a new one (a `new` function's model is made first, with its label,
        and removed again when the push fails: a first deploy that failed leaves nothing)."""
        if not new and (same := self._same_files(name, folder, project)) is not None:
            return same, False
        if new:
            self._c.models.create(name, project=project, labels=LABELS)
        try:
            version = self._c.models.push(
                folder,
                name,
                project=project,
                flavor="python",
                trusted=True,
                sample=sample,
                tags={SOURCE_TAG: source},
                description=description or f"function {name} from {source}",
            )
        except StratusError:
            if new:
                self._c.models.delete(name, project, force=True)
            raise
        return version, True

    def _same_files(self, name: str, folder: Path, project: str | None) -> rg.VersionRead | None:
        """The latest version when it holds exactly the files of `folder`, trusted."""
        try:
            latest = self._c.models.version(name, project)
        except NotFound:
            return None
        here = {(rel, sha) for rel, _, sha, _ in local_files(folder)}
        there = {(f.path, f.sha256) for f in latest.files}
        same = here == there and latest.trusted and latest.flavor == "python"
        return latest if same and latest.state == "ready" else None


def check_handler(source: Path) -> None:
    """Refuse, with one line naming the file (and the line), a handler that cannot work."""
    if not source.exists():
        raise InvalidInput(f"{source} does not exist")
    if not source.is_file():
        raise InvalidInput(f"{source} is not a file: give the Python file that defines predict")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{source} is not UTF-8 text") from None
    problem = source_problem(text, str(source))
    if problem is not None:
        raise InvalidInput(problem)


def package(source: Path, include: Sequence[str | Path], into: Path) -> Path:
    """The artifact folder: `source` as predictor.py, and each included path by its name."""
    folder = into / "function"
    folder.mkdir()
    shutil.copyfile(source, folder / ENTRY_POINT)
    for extra in map(Path, include):
        target = folder / extra.name
        if not extra.exists():
            raise InvalidInput(f"{extra} (included) does not exist")
        if target.exists():
            raise InvalidInput(
                f"{extra} (included) would overwrite {extra.name} in the function's folder"
            )
        if extra.is_dir():
            shutil.copytree(extra, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(extra, target)
    return folder


def scaling_of(
    endpoint: ep.EndpointRead | None,
    *,
    max_replicas: int | None,
    target_concurrency: float | None,
    scale_to_zero_after_seconds: float | None,
) -> dict[str, Any]:
    """The main variant's autoscaling: min 0, the settings given over the current ones (or
    over the defaults, for a new function)."""
    current: dict[str, Any] = {
        "max_replicas": DEFAULT_MAX_REPLICAS,
        "target_concurrency": DEFAULT_TARGET_CONCURRENCY,
        "scale_to_zero_after_seconds": DEFAULT_SCALE_TO_ZERO_AFTER,
    }
    if endpoint is not None and (autoscaling := main_variant(endpoint.spec).autoscaling):
        current = autoscaling.model_dump(mode="json")
    given = {
        "max_replicas": max_replicas,
        "target_concurrency": target_concurrency,
        "scale_to_zero_after_seconds": scale_to_zero_after_seconds,
    }
    return {**current, **{k: v for k, v in given.items() if v is not None}, "min_replicas": 0}
