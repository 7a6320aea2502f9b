"""`stratus export dockerfile`: a build context for an image that serves one model version with
the replica runtime on its own (`serving/standalone.py`), no control plane beside it.

Pure: from the version's registry record to the texts of the context's files (`Dockerfile`,
`.dockerignore`, `serving.json`); the CLI downloads the version's files into `model/` next to
them. The image's paths, port and command are named here once, so the Kubernetes manifests of
`kubernetes.py` start the same runtime the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from stratus.core.errors import Conflict, InvalidInput, PermissionDenied
from stratus.registry.schemas import VersionRead
from stratus.serving.standalone_spec import StandaloneSpec

ROOT = "/srv/stratus"
MODEL_DIR = f"{ROOT}/model"  # the version's files, as `stratus models pull` writes them
SPEC_FILE = f"{ROOT}/serving.json"
WHEELS_DIR = "/tmp/wheels"
PORT = 8080
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
RUNTIME_UID = 10001  # the image's user: not root, and the same number the manifests run as

#: The extras of the `stratus` package each flavor's loading needs (pandas where a batch may
#: become a DataFrame: scikit-learn models fitted on named columns, and user code).
FLAVOR_EXTRAS: dict[str, tuple[str, ...]] = {
    "sklearn": ("sklearn", "pandas"),
    "onnx": ("onnx",),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "mlflow": ("mlflow",),
    "python": ("pandas",),
}

#: Run in the image after `pip install`: fails the build unless the `stratus` installed is this
#: project (it reads the distribution's file list; importing a stranger's package would run it).
INSTALL_CHECK = (
    "import importlib.metadata as m, sys; "
    "files = {str(f) for f in m.files('stratus') or ()}; "
    "sys.exit(0 if 'stratus/serving/standalone.py' in files else "
    '\'the package installed as "stratus" is not the Stratus ML platform: build from a wheel '
    "(stratus export dockerfile --wheel) or set STRATUS_REQUIREMENT')"
)

DOCKERIGNORE = """\
# The context holds only what the Dockerfile copies; anything added beside it stays out.
*
!serving.json
!model
!wheels
"""


def runtime_command(
    *,
    host: str = "0.0.0.0",
    port: int = PORT,
    name: str | None = None,
    max_batch_size: int | None = None,
    max_wait_ms: float | None = None,
    passthrough: Sequence[str] = (),
) -> list[str]:
    """The command line that starts the standalone replica in the image."""
    command = [
        "python", "-m", "stratus.serving.standalone",
        "--spec", SPEC_FILE,
        "--model-dir", MODEL_DIR,
        "--host", host,
        "--port", str(port),
    ]  # fmt: skip
    if name is not None:
        command += ["--name", name]
    if max_batch_size is not None:
        command += ["--max-batch-size", str(max_batch_size)]
    if max_wait_ms is not None:
        command += ["--max-wait-ms", f"{max_wait_ms:g}"]
    for column in passthrough:
        command += ["--passthrough", column]
    return command


def stratus_requirement(flavor: str, stratus_version: str, wheel: str | None = None) -> str:
    """What `pip install` gets: Stratus with the flavor's extras, at `stratus_version` from the
    package index, or from `wheel` (a file name in the image's wheels folder)."""
    extras = ",".join(FLAVOR_EXTRAS.get(flavor, ()))
    package = f"stratus[{extras}]" if extras else "stratus"
    if wheel is not None:
        return f"{package} @ file://{WHEELS_DIR}/{wheel}"
    return f"{package}=={stratus_version}"


@dataclass(frozen=True)
class BuildContext:
    """The texts of a build context's files, by path; the model's files go in `model/`."""

    dockerfile: str
    dockerignore: str
    spec: str

    def files(self) -> dict[str, str]:
        return {
            "Dockerfile": self.dockerfile,
            ".dockerignore": self.dockerignore,
            "serving.json": self.spec,
        }


def check_exportable(version: VersionRead) -> str:
    """The version's flavor, once it is sure the image can load it.

    Raises:
        Conflict: the version is not committed, or a gate rejected it.
        PermissionDenied: its files load only when trusted, and it is not (the image would
            refuse to start, as a platform replica does).
        InvalidInput: it has no flavor.
    """
    ref = f"{version.model}:{version.version}"
    if version.state == "pending":
        raise Conflict(f"{ref} is not committed yet: push it again, or export another version")
    if version.state == "rejected":
        reason = version.verdict.reason if version.verdict is not None else "a gate refused it"
        raise Conflict(
            f"{ref} was rejected ({reason}); an owner may accept it first with "
            f"`stratus models accept {ref} -r REASON`"
        )
    if version.needs_trust and not version.trusted:
        files = ", ".join(version.needs_trust)
        raise PermissionDenied(
            f"{ref} loads {files} only when trusted (pickles and user code run when they are "
            f"read), and it is not; an owner of the project can mark it with "
            f"`stratus models trust {ref}`"
        )
    if not version.flavor:
        raise InvalidInput(f"{ref} has no flavor, so no runtime knows how to load it")
    return version.flavor


def build_context(
    version: VersionRead,
    *,
    stratus_version: str,
    python_version: str = "3.11",
    wheel: str | None = None,
    packages: Sequence[str] = (),
) -> BuildContext:
    """The build context of an image serving `version` on port 8080.

    Args:
        version: the registry's record of the version.
        stratus_version: the Stratus the image installs (the one exporting, so that it loads
            the version as this platform does).
        python_version: the tag of the `python:*-slim` base image.
        wheel: a Stratus wheel's file name, put in the context's `wheels/` folder, installed
            in place of the package index's Stratus (a build from a checkout).
        packages: more requirements to install (pins of the flavor's library, user code's
            libraries).

    Raises:
        Conflict, PermissionDenied, InvalidInput: see `check_exportable`.
    """
    flavor = check_exportable(version)
    ref = f"{version.model}:{version.version}"
    requirement = stratus_requirement(flavor, stratus_version, wheel)
    lines = [
        f"# A Stratus model replica on its own: {ref} ({flavor} flavor), answering HTTP on",
        f"# port {PORT} with the platform's inference paths (/predict, /invocations,",
        f"# /v2/models/{version.model}/infer) and {READY_PATH} for probes. Build and run:",
        f"#     docker build -t {version.model}:{version.version} .",
        f"#     docker run --rm -p {PORT}:{PORT} {version.model}:{version.version}",
        "# The model's files are in model/, as the registry holds them; serving.json says how",
        "# to load them (flavor, signature, whether the version is trusted).",
        f"FROM python:{python_version}-slim",
        "",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\",
        "    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
        "",
    ]
    if wheel is not None:
        lines += [
            "# Stratus from the wheel in wheels/ (built from a checkout), not a package index",
            f"COPY wheels/ {WHEELS_DIR}/",
        ]
    else:
        lines += [
            "# Stratus at the version that exported this, with the flavor's extras. On PyPI the",
            "# name belongs to another project: build with your own index (or `--wheel`, see",
            "# docs/kubernetes-export.md). Only a wheel is taken (no setup code of whatever",
            "# the index holds runs), and the build stops unless it is this Stratus.",
        ]
    lines += [
        f'ARG STRATUS_REQUIREMENT="{requirement}"',
        'RUN pip install --only-binary stratus "$STRATUS_REQUIREMENT"',
        "RUN " + json.dumps(["python", "-c", INSTALL_CHECK]),
    ]
    if packages:
        lines.append("RUN pip install " + " ".join(_quoted(p) for p in packages))
    lines += [
        f"RUN useradd --system --uid {RUNTIME_UID} --create-home replica",
        "",
        f"COPY serving.json {SPEC_FILE}",
        f"COPY model/ {MODEL_DIR}/",
        f"USER {RUNTIME_UID}",
        f"EXPOSE {PORT}",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=120s CMD "
        + json.dumps(
            [
                "python",
                "-c",
                "import urllib.request; "
                f"urllib.request.urlopen('http://127.0.0.1:{PORT}{READY_PATH}', timeout=2)",
            ]
        ),
        "CMD " + json.dumps(runtime_command()),
        "",
    ]
    spec = StandaloneSpec(
        model_name=version.model,
        model_version=version.version,
        flavor=flavor,
        trusted=version.trusted,
        signature=version.signature,
    )
    return BuildContext(
        dockerfile="\n".join(lines),
        dockerignore=DOCKERIGNORE,
        spec=spec.model_dump_json(indent=2) + "\n",
    )


def _quoted(requirement: str) -> str:
    """A requirement as one shell word (`pandas>=2` would otherwise be a redirection)."""
    return "'" + requirement.replace("'", "'\"'\"'") + "'"
