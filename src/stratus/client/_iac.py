"""The SDK's infrastructure as code: read resource documents from YAML files (one or many
documents a file, or a folder of them) and plan or apply them on the platform."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stratus.client._base import API
from stratus.core.errors import InvalidInput
from stratus.iac import schemas as iac

Source = str | Path | dict[str, Any] | Sequence[dict[str, Any]]


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or folder")
    return [path]


def load_documents(sources: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every document of the files (a folder: its .yaml and .yml files, sorted), each with
    `source` set to `FILE` or `FILE#N` (its place in a file of several)."""
    import yaml

    documents: list[dict[str, Any]] = []
    for source in sources:
        for file in _files(Path(source)):
            try:
                found = [d for d in yaml.safe_load_all(file.read_text(encoding="utf-8")) if d]
            except OSError as exc:
                raise InvalidInput(f"{file}: cannot be read: {exc.strerror or exc}") from None
            except yaml.YAMLError as exc:
                raise InvalidInput(f"{file}: not valid YAML: {exc}") from None
            for index, document in enumerate(found, start=1):
                where = f"{file}#{index}" if len(found) > 1 else str(file)
                if not isinstance(document, dict) or "kind" not in document:
                    raise InvalidInput(f"{where}: a document is a mapping with kind and metadata")
                documents.append({**document, "source": where})
    return documents


class Iac(API):
    """Plan and apply resource documents (`kind`, `metadata`, `spec`)."""

    def _body(self, source: Source | Sequence[str | Path]) -> dict[str, Any]:
        if isinstance(source, dict):
            return {"documents": [source]}
        if isinstance(source, str | Path):
            return {"documents": load_documents([source])}
        items = list(source)
        if all(isinstance(item, dict) for item in items):
            return {"documents": items}
        return {"documents": load_documents(items)}  # type: ignore[arg-type]

    def plan(self, source: Source | Sequence[str | Path]) -> iac.PlanRead:
        """What applying the documents (files, a folder, or the documents themselves) would
        change, resource by resource and field by field; nothing is changed.

        Raises:
            stratus.errors.InvalidInput: a file is not valid YAML, a kind is unknown, a
                resource is declared twice, or a spec is not valid (the error names it).
        """
        return self._c._model(iac.PlanRead, "POST", "/api/v1/iac/plans", json=self._body(source))

    def apply(
        self,
        source: Source | Sequence[str | Path],
        *,
        pinned: dict[str, int | None] | None = None,
    ) -> iac.ApplyRead:
        """Apply the documents: what changed, and if a resource failed, which and what was
        left (apply again to finish).

        Args:
            source: files, a folder, or the documents themselves.
            pinned: a saved plan's live versions (`PlanRead.pins()`): the apply is refused
                unless every resource is still as that plan saw it.

        Raises:
            stratus.errors.StaleResource: `pinned` is stale; nothing was applied.
        """
        body = self._body(source)
        if pinned is not None:
            body["pinned"] = pinned
        return self._c._model(iac.ApplyRead, "POST", "/api/v1/iac/applies", json=body)
