"""What the python flavor's `predictor.py` must define, checked from its source alone, without
running it: the SDK checks a function's handler file so before it uploads anything
(`client/_functions.py`), and this module imports nothing heavy, so the CLI may load it. The
flavor itself (`python.py`) imports the same names when it loads the code.
"""

from __future__ import annotations

import ast

ENTRY_POINT = "predictor.py"
CLASS_NAME = "Predictor"
FUNCTION_NAME = "predict"


def source_problem(source: str, filename: str) -> str | None:
    """Why `source`, meant to become an artifact's predictor.py, cannot load, judged without
    running it: a syntax error (with its line), or neither `class Predictor` nor a `predict`
    function at the module's top. None when it looks right."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        return f"{filename}, line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # null bytes
        return f"{filename}: {exc}"
    defined: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined[node.name] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update(((a.asname or a.name).partition(".")[0], node) for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update((t.id, node) for t in targets if isinstance(t, ast.Name))
    if CLASS_NAME in defined:
        return None
    found = defined.get(FUNCTION_NAME)
    if found is None:
        return (
            f"{filename} defines no function {FUNCTION_NAME}(batch) at its top level "
            f"(nor a class {CLASS_NAME})"
        )
    if isinstance(found, ast.AsyncFunctionDef):
        return f"{filename}, line {found.lineno}: {FUNCTION_NAME} must be a def, not an async def"
    return None
