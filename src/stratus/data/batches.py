"""A dataset version's rows as a stream of Arrow record batches, read again for each pass.

Profiling and validation read a version a batch at a time, so a push's memory is bounded by
the batch, not by the file. A `BatchSource` has a settled `schema` and gives its rows from the
start each time `batches()` is called: CSV through pyarrow's streaming reader, Parquet a
record batch at a time, JSON lines a block of whole lines at a time. A folder's files are
joined by `FileSource` with the same rules as `formats.combine`, batch by batch.

Column types are those `formats.read_table` infers from the whole file: pyarrow's streaming
CSV reader infers them from the first block only, so `_CsvFile` settles them first, in one
streaming pass that loosens a column's type the way pyarrow's whole-file reader does when a
later value does not fit.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Protocol, cast

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from stratus.core.errors import InvalidInput
from stratus.data.formats import FORMATS, check_compatible, first_line, refuse_duplicate_columns

#: Bytes of a file parsed at once (CSV blocks, JSON lines blocks).
BLOCK_BYTES = 4 * 2**20
#: Rows per record batch read from a Parquet file.
PARQUET_ROWS = 64 * 1024
#: Rows per record batch cut from an in-memory table.
TABLE_ROWS = 64 * 1024

Opener = Callable[[], IO[bytes]]  # a fresh binary file object positioned at the start


class BatchSource(Protocol):
    @property
    def schema(self) -> pa.Schema: ...

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows from the first, a record batch at a time (every call starts again)."""
        ...


class TableSource:
    """A table already in memory, cut into batches (the unit tests' and callers' tables)."""

    def __init__(self, table: pa.Table, rows: int = TABLE_ROWS) -> None:
        self.table = table
        self.rows = rows

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        return iter(self.table.to_batches(max_chunksize=self.rows))


def reopener(file: IO[bytes]) -> Opener:
    """Read `file` (seekable) from its start at each call; closing what the call gives leaves
    `file` open, for the next pass (pyarrow's readers close their input when done)."""

    def opened() -> IO[bytes]:
        file.seek(0)
        return cast(IO[bytes], _Unclosing(file))

    return opened


class _Unclosing(io.RawIOBase):
    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


def open_file(opener: Opener, fmt: str, name: str, block_bytes: int | None = None) -> BatchSource:
    """One file as a source; its schema is read (for CSV and JSON lines, settled) here.
    `block_bytes` is how much of a CSV or JSON lines file is parsed at once (`BLOCK_BYTES`).

    Raises:
        InvalidInput: the file cannot be parsed as `fmt`, or names a column twice.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"{name}: unknown format {fmt!r}; expected one of {FORMATS}")
    block_bytes = block_bytes or BLOCK_BYTES
    source: BatchSource
    if fmt == "csv":
        source = _CsvFile(opener, name, block_bytes)
    elif fmt == "parquet":
        source = _ParquetFile(opener, name)
    else:
        source = _JsonLinesFile(opener, name, block_bytes)
    refuse_duplicate_columns(source.schema.names, name)
    return source


class FileSource:
    """A folder's files in a stable order, joined: a column missing from a file is null there,
    types widen as `formats.combine` widens them, dictionaries are decoded."""

    def __init__(self, files: Sequence[tuple[str, BatchSource]]) -> None:
        if not files:
            raise InvalidInput("no files to combine: the folder holds no .csv, .parquet or .jsonl")
        self.files = list(files)
        self._schema = self.files[0][1].schema if len(files) == 1 else self._unified()

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        if len(self.files) == 1:
            yield from self.files[0][1].batches()
            return
        for _, source in self.files:
            for batch in source.batches():
                yield self._conform(batch)

    def _unified(self) -> pa.Schema:
        decoded = [(name, _decoded_schema(source.schema)) for name, source in self.files]
        check_compatible(decoded)
        try:
            return pa.unify_schemas([schema for _, schema in decoded], promote_options="permissive")
        except pa.ArrowException as exc:
            raise InvalidInput(f"the files cannot be combined: {first_line(exc)}") from None

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = []
        for field in self._schema:
            index = batch.schema.get_field_index(field.name)
            if index < 0:
                columns.append(pa.nulls(batch.num_rows, field.type))
                continue
            column = batch.column(index)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            try:
                columns.append(column.cast(field.type))
            except pa.ArrowException as exc:  # e.g. a uint64 too large for the unified int64
                raise InvalidInput(f"the files cannot be combined: {first_line(exc)}") from None
        return pa.RecordBatch.from_arrays(columns, schema=self._schema)


def _decoded_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [
            pa.field(f.name, f.type.value_type, f.nullable) if pa.types.is_dictionary(f.type) else f
            for f in schema
        ]
    )


def _invalid(name: str, fmt: str, exc: Exception) -> InvalidInput:
    return InvalidInput(f"{name}: cannot be read as {fmt}: {first_line(exc)}")


# --- CSV -----------------------------------------------------------------------------------

# The order in which pyarrow's CSV reader loosens a column's type when a value does not fit
# (arrow/csv/inference_internal.h): a column takes the first type every value converts to.
_LOOSER = [
    pa.null(),
    pa.int64(),
    pa.bool_(),
    pa.date32(),
    pa.time32("s"),
    pa.timestamp("s"),
    pa.timestamp("ns"),
    pa.timestamp("s", tz="UTC"),
    pa.timestamp("ns", tz="UTC"),
    pa.float64(),
    pa.string(),
    pa.binary(),
]
_CONVERSION = re.compile(
    r"^In CSV column #(\d+): CSV conversion error to .*?: invalid value '(.*)'$"
)


class _CsvFile:
    """CSV cells read as `formats.read_table` reads them (see there), block by block."""

    def __init__(self, opener: Opener, name: str, block_bytes: int) -> None:
        self.opener, self.name, self.block_bytes = opener, name, block_bytes
        self._schema = self._settle()

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        types = {f.name: f.type for f in self._schema}
        with self.opener() as raw:
            try:
                yield from self._reader(raw, types)
            except pa.ArrowException as exc:
                raise _invalid(self.name, "csv", exc) from None

    def _reader(self, raw: IO[bytes], types: dict[str, pa.DataType]) -> pa_csv.CSVStreamingReader:
        return pa_csv.open_csv(
            raw,
            read_options=pa_csv.ReadOptions(block_size=self.block_bytes),
            # Without newlines_in_values, pyarrow loses its place in big files whose quoted
            # values span lines (it costs nothing measurable).
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )

    def _settle(self) -> pa.Schema:
        """Read the file through once; where a value does not fit the type inferred from the
        first block, loosen that column's type past every type the value does not fit, and
        read again (rare: a column of integers with a decimal far down, say)."""
        fixed: dict[str, pa.DataType] = {}
        schema: pa.Schema | None = None  # the last one a reader opened with
        while True:
            with self.opener() as raw:
                try:
                    reader = self._reader(raw, fixed)
                    schema = reader.schema
                    for _ in reader:
                        pass
                    return schema
                except pa.ArrowInvalid as exc:
                    found = _CONVERSION.match(first_line(exc))
                    if found is None or schema is None:
                        raise _invalid(self.name, "csv", exc) from None
                    field = schema.field(int(found.group(1)))
                    current = fixed.get(field.name, field.type)
                    fixed[field.name] = _looser(current, found.group(2), self.name, exc)
                except pa.ArrowException as exc:
                    raise _invalid(self.name, "csv", exc) from None


def _looser(current: pa.DataType, value: str, name: str, exc: Exception) -> pa.DataType:
    position = next((i for i, t in enumerate(_LOOSER) if t == current), None)
    if position is None:
        raise _invalid(name, "csv", exc)
    for candidate in _LOOSER[position + 1 :]:
        if _fits(value, candidate):
            return candidate
    raise _invalid(name, "csv", exc)


def _fits(value: str, arrow_type: pa.DataType) -> bool:
    cell = b'"' + value.encode("utf-8", "surrogateescape").replace(b'"', b'""') + b'"\n'
    try:
        pa_csv.open_csv(
            io.BytesIO(b"v\n" + cell),
            convert_options=pa_csv.ConvertOptions(column_types={"v": arrow_type}),
        ).read_all()
    except pa.ArrowException:
        return False
    return True


# --- Parquet -------------------------------------------------------------------------------


class _ParquetFile:
    def __init__(self, opener: Opener, name: str) -> None:
        self.opener, self.name = opener, name
        with self.opener() as raw:
            try:
                self._schema = pq.ParquetFile(raw).schema_arrow
            except pa.ArrowException as exc:
                raise _invalid(name, "parquet", exc) from None

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        with self.opener() as raw:
            try:
                file = pq.ParquetFile(raw)
                # a reader per row group: one reader over the whole file keeps every row
                # group's buffers until it ends (+70 MB a million rows of ten floats)
                for group in range(file.num_row_groups):
                    yield from file.iter_batches(batch_size=PARQUET_ROWS, row_groups=[group])
            except pa.ArrowException as exc:
                raise _invalid(self.name, "parquet", exc) from None


# --- JSON lines ----------------------------------------------------------------------------


class _JsonLinesFile:
    """pyarrow has no streaming JSON reader: blocks of whole lines are parsed one at a time.
    A first pass unifies the blocks' inferred types (an integer column with a decimal in a
    later block becomes double, as in a whole-file read); each block is then parsed with that
    schema."""

    def __init__(self, opener: Opener, name: str, block_bytes: int) -> None:
        self.opener, self.name, self.block_bytes = opener, name, block_bytes
        schemas = [table.schema for table in self._tables(None)]
        if not schemas:
            raise InvalidInput(f"{name}: cannot be read as jsonl: the file holds no rows")
        try:
            self._schema = pa.unify_schemas(schemas, promote_options="permissive")
        except pa.ArrowException as exc:
            raise _invalid(name, "jsonl", exc) from None

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        for table in self._tables(self._schema):
            yield from table.combine_chunks().to_batches()

    def _tables(self, schema: pa.Schema | None) -> Iterator[pa.Table]:
        options = pa_json.ParseOptions(explicit_schema=schema) if schema is not None else None
        for block in self._blocks():
            try:
                yield pa_json.read_json(io.BytesIO(block), parse_options=options)
            except pa.ArrowException as exc:
                raise _invalid(self.name, "jsonl", exc) from None

    def _blocks(self) -> Iterator[bytes]:
        with self.opener() as raw:
            rest = b""
            while True:
                chunk = raw.read(self.block_bytes)
                if not chunk:
                    break
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: keep reading
                    rest = data
                    continue
                rest = data[cut:]
                if data[:cut].strip():
                    yield data[:cut]
            if rest.strip():
                yield rest
