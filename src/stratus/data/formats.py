"""The file formats a dataset version is pushed in: CSV, Parquet and JSON lines, read into Arrow.

`stratus data push` sends a file or a folder of files; the data service picks each file's
format by extension (`format_of`), parses it (`read_table`) and joins a folder's files into
one table (`combine`) before `stratus.data.profiling` infers its schema and profile.
pyarrow is imported only by the functions that read, so `format_of` can validate requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from stratus.core.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("csv", "parquet", "jsonl")
EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_SUPPORTED = ", ".join(EXTENSIONS)


def format_of(path: str) -> str:
    """`csv`, `parquet` or `jsonl`, by the file's extension (in any case)."""
    suffix = PurePosixPath(path).suffix.lower()
    fmt = EXTENSIONS.get(suffix)
    if fmt is not None:
        return fmt
    if suffix == ".json":
        raise InvalidInput(
            f"{path}: a .json file may hold one document rather than one record per line; "
            "if it is JSON lines (one object per line), rename it to .jsonl"
        )
    raise InvalidInput(f"{path}: unsupported file type; expected one of {_SUPPORTED}")


def read_table(source: IO[bytes] | Path, fmt: str, *, name: str = "") -> pa.Table:
    """Parse one file into an Arrow table, with the column types pyarrow infers.

    CSV cells read as pandas reads them: an empty cell (or `NA`, `NULL`, …) is null in every
    column, strings too, while a quoted `""` stays an empty string; quoted values may span
    lines. A header-only CSV gives a table of 0 rows (its columns typed `null`). A Parquet
    `source` must be seekable. A missing file is not a parse error: it raises `OSError`.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    label = name or (source.name if isinstance(source, Path) else "data")
    if fmt not in FORMATS:
        raise InvalidInput(f"{label}: unknown format {fmt!r}; expected one of {FORMATS}")
    try:
        if fmt == "csv":
            table = pa_csv.read_csv(
                source,
                # Without newlines_in_values, pyarrow loses its place in big files whose
                # quoted values span lines (it costs nothing measurable).
                parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                convert_options=pa_csv.ConvertOptions(
                    strings_can_be_null=True, quoted_strings_can_be_null=False
                ),
            )
        elif fmt == "parquet":
            table = pq.read_table(source)
        else:
            table = pa_json.read_json(source)
    except pa.ArrowException as exc:
        raise InvalidInput(f"{label}: cannot be read as {fmt}: {first_line(exc)}") from None
    refuse_duplicate_columns(table.column_names, label)
    return table


def combine(tables: Sequence[tuple[str, pa.Table]]) -> pa.Table:
    """One table from a folder's files, given as (file name, table) in a stable order.

    Columns are matched by name; a column missing from a file is null there. Types widen where
    no value can be lost in kind (int32 with int64, int64 with double, `null` with anything),
    and dictionary-encoded columns are decoded first, as encoding is a detail of how one file
    was written. Any other disagreement is refused, naming the two files and the column.
    """
    import pyarrow as pa

    if not tables:
        raise InvalidInput("no files to combine: the folder holds no .csv, .parquet or .jsonl")
    if len(tables) == 1:
        return tables[0][1]
    decoded = [(name, _decode_dictionaries(table)) for name, table in tables]
    check_compatible([(name, table.schema) for name, table in decoded])
    try:
        return pa.concat_tables([table for _, table in decoded], promote_options="permissive")
    except pa.ArrowException as exc:  # e.g. a uint64 too large for the unified int64
        raise InvalidInput(f"the files cannot be combined: {first_line(exc)}") from None


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def refuse_duplicate_columns(names: Sequence[str], label: str) -> None:
    seen: set[str] = set()
    for column in names:
        if column in seen:
            raise InvalidInput(f"{label}: column {column!r} appears more than once")
        seen.add(column)


def _decode_dictionaries(table: pa.Table) -> pa.Table:
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            plain = table.column(i).cast(field.type.value_type)
            table = table.set_column(i, pa.field(field.name, plain.type, field.nullable), plain)
    return table


def check_compatible(schemas: Sequence[tuple[str, pa.Schema]]) -> None:
    """Unify column by column, remembering which file set each column's type, to name a clash."""
    import pyarrow as pa

    types: dict[str, pa.DataType] = {}
    origins: dict[str, str] = {}
    for name, schema in schemas:
        for field in schema:
            known = types.get(field.name)
            if known is None or pa.types.is_null(known):
                types[field.name] = field.type
                origins[field.name] = name
                continue
            try:
                merged = pa.unify_schemas(
                    [pa.schema([(field.name, known)]), pa.schema([field])],
                    promote_options="permissive",
                )
            except pa.ArrowException:
                raise InvalidInput(
                    f"{origins[field.name]} and {name} disagree on column {field.name!r}: "
                    f"{known} in one, {field.type} in the other"
                ) from None
            types[field.name] = merged.field(field.name).type
