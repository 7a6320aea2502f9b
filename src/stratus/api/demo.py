"""`stratus up --demo`: a small trained model behind an endpoint named `demo`, in the
`default` project, so a newcomer can call a model the moment the platform is up.

The model is a scikit-learn pipeline (scaling + logistic regression) trained on the
breast-cancer data scikit-learn ships, stored in the skops format (safe to load untrusted).
Seeding is idempotent: an existing `demo` endpoint is left as it is.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

from stratus.api.platform import Platform
from stratus.core.errors import NotFound
from stratus.endpoints import schemas as es
from stratus.registry import schemas as rs
from stratus.registry.signatures import infer_signature

log = logging.getLogger("stratus.demo")

PROJECT = "default"
NAME = "demo"
ACTOR = "system:demo"
CARD = """# demo: breast-cancer classifier

A logistic regression (with standard scaling) trained on scikit-learn's bundled Wisconsin
breast-cancer data: 30 numeric features per row, predicts 0 (malignant) or 1 (benign).
Seeded by `stratus up --demo` so there is something to call.
"""


def seed_demo(platform: Platform) -> str:
    """Create the demo model and endpoint unless they exist; say what happened."""
    try:
        import skops.io
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return (
            "demo skipped: scikit-learn and skops are not installed (pip install 'stratus[models]')"
        )
    try:
        platform.endpoints.get(PROJECT, NAME)
        return f"demo endpoint: already there ({PROJECT}/{NAME})"
    except NotFound:
        pass
    data = load_breast_cancer(as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    signature = infer_signature(x_test.head(20), model.predict(x_test.head(20)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.skops"
        skops.io.dump(model, path)
        payload = path.read_bytes()
    version = _push(platform, payload, signature.model_dump(mode="json"), accuracy)
    platform.registry.set_alias(
        PROJECT, NAME, "production",
        rs.AliasSet(version=version, reason="seeded by stratus up --demo"), actor=ACTOR,
    )  # fmt: skip
    platform.endpoints.create(
        PROJECT,
        es.EndpointCreate(
            name=NAME,
            description="the demo model (stratus up --demo)",
            variants=[es.VariantSpec(model=f"{NAME}@production", replicas=1)],
            reason="seeded by stratus up --demo",
        ),
        actor=ACTOR,
    )
    return (
        f"demo endpoint: model {NAME}:{version} (accuracy {accuracy:.3f}) deployed at "
        f"/inference/{PROJECT}/{NAME}"
    )


def _push(platform: Platform, payload: bytes, signature: dict[str, object], accuracy: float) -> int:
    registry = platform.registry
    try:
        registry.get_model(PROJECT, NAME)
    except NotFound:
        registry.create_model(
            PROJECT, rs.ModelCreate(name=NAME, description="breast-cancer classifier (demo)")
        )
    digest = hashlib.sha256(payload).hexdigest()
    declared = registry.create_version(
        PROJECT,
        NAME,
        rs.VersionCreate(
            files=[rs.FileEntry(path="model.skops", sha256=digest, size=len(payload))],
            flavor="sklearn",
            signature=signature,
            metrics={"accuracy": accuracy},
            params={"estimator": "StandardScaler+LogisticRegression", "max_iter": 1000},
            # trained on scikit-learn's bundled data, not a dataset version of the project
            tags={"training-data": "sklearn.datasets.load_breast_cancer"},
            card=CARD,
        ),
        actor=ACTOR,
        can_trust=False,
    )
    if not declared.files[0].stored:
        upload = registry.begin_upload(PROJECT, NAME, declared.version, "model.skops")
        try:
            upload.write(payload)
            registry.finish_upload(upload)
        except BaseException:
            upload.abort()
            raise
    return registry.commit_version(PROJECT, NAME, declared.version).version
