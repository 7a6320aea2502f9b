"""Models trained once per session on scikit-learn's bundled breast-cancer data (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from registry_samples import ArtifactMaker, Cancer

from stratus.registry.signatures import Signature, TensorSpec


@pytest.fixture(scope="session")
def cancer() -> Cancer:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    signature = Signature(inputs=[TensorSpec(name=n, dtype="float64", shape=[-1]) for n in names])
    return Cancer(X=data.data, y=data.target, names=names, signature=signature)


@pytest.fixture(scope="session")
def lr_pipeline(cancer: Cancer) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression()).fit(cancer.X, cancer.y)


@pytest.fixture(scope="session")
def forest(cancer: Cancer) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)
    return model.fit(cancer.X, cancer.y)


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> ArtifactMaker:
    """A fresh, empty artifact folder per call."""

    def make(name: str) -> Path:
        return tmp_path_factory.mktemp(name)

    return make
