"""The ONNX flavor: a `*.onnx` file run by onnxruntime on the CPU, one thread per call.

ONNX files hold no code, so they need no trust. A model with a single 2-D input gets the batch's
matrix cast to the input's type; a model with several inputs is fed the batch's columns by name.
Tensor outputs are returned (one array, or a dict for several); ZipMap-style outputs (lists of
dicts) are skipped when a tensor output exists, else turned into a 2-D array. A classifier (its
graph names classes, and its second output is probabilities: `onnx_graph`) predicts its label
alone, and gives its probabilities (a tensor, or ZipMap's maps) through `predict_proba`. Each
fed array is checked against the input's declared shape first, so a wrong-shaped request is a
400 that names the input and both shapes, not onnxruntime's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.core.errors import InvalidInput, StratusError
from stratus.registry.flavors.base import (
    ModelLoadError,
    list_files,
    loading,
    pick_file,
    prediction_failed,
)
from stratus.registry.flavors.onnx_graph import GraphInfo, read_graph

if TYPE_CHECKING:
    import numpy as np

    from stratus.registry.batches import Batch
    from stratus.registry.flavors.base import Predictions
    from stratus.registry.signatures import Signature


class OnnxFlavor:
    name = "onnx"

    def detect(self, files: Sequence[str]) -> bool:
        return any(f.lower().endswith(".onnx") for f in files)

    def unsafe_files(self, files: Sequence[str]) -> list[str]:
        return []

    def load(self, path: Path, *, trusted: bool, signature: Signature | None) -> OnnxModel:
        file = pick_file(list_files(path), [".onnx"], self.name)
        with loading(self.name, file):
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1  # a replica serves many small calls; scale replicas
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(
                str(path / file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        try:
            with open(path / file, "rb") as stream:
                graph: GraphInfo | None = read_graph(stream)
        except (OSError, ValueError):  # onnxruntime reads it: only its classes go unknown
            graph = None
        return OnnxModel(session, signature, graph)


def _numpy_type(onnx_type: str, what: str) -> Any:
    import numpy as np

    types: dict[str, Any] = {
        "tensor(double)": np.float64,
        "tensor(float)": np.float32,
        "tensor(float16)": np.float16,
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
        "tensor(int16)": np.int16,
        "tensor(int8)": np.int8,
        "tensor(uint8)": np.uint8,
        "tensor(bool)": np.bool_,
        "tensor(string)": object,
    }
    if onnx_type not in types:
        raise ModelLoadError(
            f"the ONNX model's {what} has type {onnx_type}, which Stratus cannot feed"
        )
    return types[onnx_type]


class OnnxModel:
    """An onnxruntime session with its feeding plan worked out once, at load time."""

    supports_batching = True

    def __init__(
        self, session: Any, signature: Signature | None, graph: GraphInfo | None = None
    ) -> None:
        self._run = session.run
        inputs = session.get_inputs()
        self._inputs: list[tuple[str, Any, int]] = [
            (i.name, _numpy_type(i.type, f"input {i.name!r}"), len(i.shape)) for i in inputs
        ]
        # each input's declared shape, -1 for a dimension of any size (None or symbolic)
        self._shapes: dict[str, tuple[int, ...]] = {
            i.name: tuple(d if isinstance(d, int) and d >= 0 else -1 for d in i.shape)
            for i in inputs
        }
        self._as_matrix = len(inputs) == 1 and len(inputs[0].shape) == 2
        if len(inputs) > 1 and signature is not None:
            for name, _, _ in self._inputs:
                if name not in signature.input_set:
                    raise ModelLoadError(
                        f"the ONNX model's input {name!r} is not in the signature "
                        f"(inputs: {', '.join(signature.input_names)})"
                    )
        outputs = session.get_outputs()
        tensors = [o.name for o in outputs if o.type.startswith("tensor(")]
        self._outputs = tensors or [o.name for o in outputs]
        self._maps = not tensors  # only ZipMap-style outputs: convert them
        # A classifier (a label, then probabilities): predict answers the label alone,
        # predict_proba the probabilities, a tensor or ZipMap's maps keyed by class.
        self.classes: list[Any] | None = None
        self.no_probabilities = (
            "the ONNX model is not a classifier (it has no probabilities as its second output)"
        )
        classes = graph.classes if graph is not None else None
        if classes is not None and len(outputs) >= 2 and outputs[0].type.startswith("tensor("):
            self.classes = classes
            self._outputs, self._maps = [outputs[0].name], False
            self._probabilities = outputs[1].name
            self._probability_maps = not outputs[1].type.startswith("tensor(")

    def predict(self, batch: Batch) -> Predictions:
        feed = self._checked_feed(batch)
        try:
            results = self._run(self._outputs, feed)
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc
        if self._maps:
            results = [_maps_to_array(r) for r in results]
        if len(results) == 1:
            return results[0]  # type: ignore[no-any-return]
        return dict(zip(self._outputs, results, strict=True))

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        """One column per class, in `classes` order (None when the model is no classifier)."""
        if self.classes is None:
            return None
        import numpy as np

        feed = self._checked_feed(batch)
        try:
            (result,) = self._run([self._probabilities], feed)
            if self._probability_maps:
                classes = self.classes
                # ZipMap's maps hold floats (its values are tensor(float))
                return np.array([[row[c] for c in classes] for row in result], dtype=np.float32)
        except StratusError:
            raise
        except Exception as exc:
            raise prediction_failed(exc) from exc
        return np.asarray(result)

    def _checked_feed(self, batch: Batch) -> dict[str, np.ndarray]:
        feed = self._feed(batch)
        for name, array in feed.items():
            _check_shape(name, array, self._shapes[name])
        return feed

    def _feed(self, batch: Batch) -> dict[str, np.ndarray]:
        if self._as_matrix:
            name, dtype, _ = self._inputs[0]
            return {name: batch.matrix(dtype)}
        if len(self._inputs) == 1:
            name, dtype, _ = self._inputs[0]
            if len(batch.names) != 1:
                raise InvalidInput(f"the model takes a single input, {name!r}")
            (column,) = batch.columns.values()
            return {name: column.astype(dtype, copy=False)}
        feed = {}
        columns = batch.columns
        for name, dtype, rank in self._inputs:
            if name not in columns:
                raise InvalidInput(f"missing input {name!r}")
            column = columns[name]
            if column.ndim == 1 and rank == 2:
                column = column.reshape(-1, 1)
            feed[name] = column.astype(dtype, copy=False)
        return feed


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...]) -> None:
    """Refuse an array that cannot fit the input's declared shape, in the caller's terms."""
    got = array.shape
    if len(got) == len(expected) and all(e in (-1, g) for e, g in zip(expected, got, strict=True)):
        return
    shown = "[" + ", ".join(str(d) for d in expected) + "]"
    why = (
        f"{len(got)} dimension(s), not {len(expected)}"
        if len(got) != len(expected)
        else ", ".join(
            f"dimension {i} is {g}, not {e}"
            for i, (e, g) in enumerate(zip(expected, got, strict=True))
            if e not in (-1, g)
        )
    )
    raise InvalidInput(
        f"input {name!r} takes shape {shown} of {array.dtype} (-1: any size); the request "
        f"gave shape {list(got)}: {why}",
        input=name,
        expected_shape=list(expected),
        received_shape=list(got),
        datatype=str(array.dtype),
    )


def _maps_to_array(rows: Any) -> np.ndarray:
    import numpy as np

    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        return np.asarray(rows)
    keys = sorted(rows[0])
    return np.array([[row[k] for k in keys] for row in rows])
