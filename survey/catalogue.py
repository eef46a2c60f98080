"""Streaming LAMOST catalogue tools: split by MK class group, stratified obsid samples.

Usage::

    summary = split_catalogue(Path("dr10_v2.0_LRS_catalogue.csv.gz"), Path("by_class"))
    sample = sample_catalogue(Path("my_data3.csv"), Path("sample"), per_class=100, seed=0)

A catalogue is a pipe- (LAMOST's own files) or comma-separated text table with a header
line, plain or gzipped (recognised from the magic bytes, not the name). It is read in
blocks with pyarrow, so memory is bounded by the block size and the writers' buffers
whatever the number of rows.

Column types are inferred from the first block (at most ``block_bytes``), then widened so
that later blocks cannot fail on them: integer columns other than obsid become float64
(exact up to 2**53), dates and all-empty columns become strings.

Groups: STAR rows go to ``O B A F G K M`` by the first letter of the subclass, with the
dwarf/giant/subdwarf M prefixes ``dM``, ``gM``, ``sdM`` mapped to ``M``; other STAR
subclasses (``OB``, ``WD``, ``CarbonWD``, ``DoubleStar``, ...) go to ``star_other`` (the
mixed ``OB`` template is not a reliable O star). Non-STAR rows are grouped by their class in
lower case (``galaxy``, ``qso``, ``unknown``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

MK_LETTERS = ("O", "B", "A", "F", "G", "K", "M")
M_PREFIXES = ("sd", "d", "g")
STAR_OTHER = "star_other"
DEFAULT_BLOCK_BYTES = 4 << 20
DEFAULT_ROW_GROUP_BYTES = 16 << 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class CatalogueColumns:
    """Names of the catalogue columns the tools need (LAMOST's by default)."""

    obsid: str = "obsid"
    object_class: str = "class"
    subclass: str = "subclass"


@dataclass
class SplitSummary:
    """What :func:`split_catalogue` wrote."""

    catalogue: str
    rows: int
    counts: dict[str, int]
    files: dict[str, str]
    seconds: float
    rows_per_s: float


@dataclass
class SampleSummary:
    """What :func:`sample_catalogue` wrote; ``available`` counts every group in the file."""

    catalogue: str
    seed: int
    per_class: int
    rows: int
    available: dict[str, int]
    sampled: dict[str, int]
    short: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def mk_group(object_class: str | None, subclass: str | None) -> str:
    """The output group of one catalogue row (see the module docstring)."""
    object_class = (object_class or "").strip()
    subclass = (subclass or "").strip()
    if object_class.upper() != "STAR":
        name = re.sub(r"[^a-z0-9_-]+", "_", object_class.lower()).strip("_")
        return name or "no_class"
    if any(subclass.startswith(prefix + "M") for prefix in M_PREFIXES):
        return "M"
    if subclass.startswith("OB"):
        return STAR_OTHER
    return subclass[0] if subclass[:1] in MK_LETTERS else STAR_OTHER


def catalogue_head(path: Path, size: int = DEFAULT_BLOCK_BYTES) -> bytes:
    """The first ``size`` bytes of the (decompressed) catalogue, cut after the last newline."""
    with _open_stream(path) as stream:
        head = stream.read(size)
    if len(head) == size and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]
    if not head.strip():
        raise ValueError(f"{path}: empty catalogue (no header line)")
    return head


def detect_delimiter(head: bytes) -> str:
    """``|`` or ``,``: whichever occurs more often in the header line."""
    header = head.split(b"\n", 1)[0]
    return "|" if header.count(b"|") > header.count(b",") else ","


def _open_stream(path: Path) -> pa.NativeFile:
    """The file's bytes, decompressed when it starts with the gzip magic."""
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == _GZIP_MAGIC
    raw = pa.OSFile(str(path), "rb")
    return pa.CompressedInputStream(raw, "gzip") if gzipped else raw


def _widened(schema: pa.Schema, obsid: str) -> dict[str, pa.DataType]:
    """Column types for the whole file from the types inferred on its first block."""
    types = {}
    for column in schema:
        kind = column.type
        if column.name == obsid and pa.types.is_integer(kind):
            types[column.name] = pa.int64()
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            types[column.name] = pa.float64()
        elif pa.types.is_boolean(kind):
            types[column.name] = pa.bool_()
        else:
            types[column.name] = pa.string()
    return types


def read_batches(
    path: Path,
    columns: CatalogueColumns = CatalogueColumns(),
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[pa.RecordBatch]:
    """Record batches of a catalogue, in file order, with one schema for the whole file."""
    path = Path(path)
    head = catalogue_head(path, block_bytes)
    read_options = pacsv.ReadOptions(block_size=block_bytes)
    parse_options = pacsv.ParseOptions(delimiter=detect_delimiter(head))
    inferred = pacsv.read_csv(pa.BufferReader(head), parse_options=parse_options).schema
    missing = {columns.obsid, columns.object_class, columns.subclass} - set(inferred.names)
    if missing:
        raise KeyError(
            f"{path.name}: no column(s) {sorted(missing)}; columns are {inferred.names[:12]}..."
        )
    convert = pacsv.ConvertOptions(column_types=_widened(inferred, columns.obsid))
    with _open_stream(path) as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert,
        )
        try:
            yield from reader
        finally:
            reader.close()  # before the stream: no read-ahead may outlive its file


def batch_groups(batch: pa.RecordBatch, columns: CatalogueColumns) -> pa.Array:
    """The group name of every row of a batch (computed once per distinct class/subclass)."""
    object_class = pc.fill_null(batch.column(columns.object_class).cast(pa.string()), "")
    subclass = pc.fill_null(batch.column(columns.subclass).cast(pa.string()), "")
    keys = pc.binary_join_element_wise(object_class, subclass, "\x1f").dictionary_encode()
    names = [mk_group(*key.split("\x1f", 1)) for key in keys.dictionary.to_pylist()]
    return pc.take(pa.array(names, pa.string()), keys.indices)


def _group_tables(batch: pa.RecordBatch, columns: CatalogueColumns) -> Iterator[tuple]:
    """(group, rows of that group as a Table) for every group present in a batch."""
    groups = batch_groups(batch, columns)
    table = pa.Table.from_batches([batch])
    for name in pc.unique(groups).to_pylist():
        yield name, table.filter(pc.equal(groups, name))


class _GroupWriters:
    """One Parquet file per group, written as ``.NAME.parquet.part`` and renamed at the end."""

    def __init__(self, out_dir: Path, schema: pa.Schema, row_group_bytes: int):
        self.out_dir = out_dir
        self.schema = schema
        self.row_group_bytes = row_group_bytes
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.buffers: dict[str, list[pa.Table]] = {}
        self.buffered_bytes: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def part(self, group: str) -> Path:
        return self.out_dir / f".{group}.parquet.part"

    def add(self, group: str, rows: pa.Table) -> None:
        self.buffers.setdefault(group, []).append(rows)
        self.counts[group] = self.counts.get(group, 0) + rows.num_rows
        self.buffered_bytes[group] = self.buffered_bytes.get(group, 0) + rows.nbytes
        if self.buffered_bytes[group] >= self.row_group_bytes:
            self._flush(group)

    def _flush(self, group: str) -> None:
        tables = self.buffers.pop(group, [])
        self.buffered_bytes[group] = 0
        if not tables:
            return
        if group not in self.writers:
            self.writers[group] = pq.ParquetWriter(self.part(group), self.schema)
        self.writers[group].write_table(pa.concat_tables(tables))

    def close(self) -> dict[str, Path]:
        """Flush, close and rename every file; returns group -> final path."""
        for group in list(self.buffers):
            self._flush(group)
        final = {}
        for group, writer in self.writers.items():
            writer.close()
            final[group] = self.out_dir / f"{group}.parquet"
            self.part(group).replace(final[group])
        return final

    def abort(self) -> None:
        """Close and delete the partial files (after an error)."""
        for group, writer in self.writers.items():
            writer.close()
            self.part(group).unlink(missing_ok=True)


def _prepare_out_dir(out_dir: Path, overwrite: bool, pattern: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(out_dir.glob(pattern))
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds {existing[0].name} (and {len(existing) - 1} more); "
            "choose a new output folder or pass --overwrite"
        )
    for path in existing:
        path.unlink()


def split_catalogue(
    path: Path,
    out_dir: Path,
    columns: CatalogueColumns = CatalogueColumns(),
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    overwrite: bool = False,
) -> SplitSummary:
    """Split a catalogue into ``OUT/<group>.parquet`` files plus ``OUT/split.json``.

    Every row is kept unchanged (all columns). Files appear under their final names only
    when the whole catalogue has been read.
    """
    path, out_dir = Path(path), Path(out_dir)
    _prepare_out_dir(out_dir, overwrite, "*.parquet")
    started = time.perf_counter()
    writers: _GroupWriters | None = None
    rows = 0
    try:
        for batch in read_batches(path, columns, block_bytes):
            writers = writers or _GroupWriters(out_dir, batch.schema, row_group_bytes)
            rows += batch.num_rows
            for group, table in _group_tables(batch, columns):
                writers.add(group, table)
        files = writers.close() if writers else {}
    except BaseException:
        if writers is not None:
            writers.abort()
        raise
    seconds = time.perf_counter() - started
    summary = SplitSummary(
        catalogue=str(path),
        rows=rows,
        counts=_ordered(writers.counts if writers else {}),
        files={group: str(p) for group, p in _ordered(files).items()},
        seconds=round(seconds, 3),
        rows_per_s=round(rows / seconds, 1) if seconds > 0 else 0.0,
    )
    (out_dir / "split.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def _ordered(by_group: dict) -> dict:
    """MK letters first in O..M order, then the other groups alphabetically."""
    rank = {letter: i for i, letter in enumerate(MK_LETTERS)}
    return dict(sorted(by_group.items(), key=lambda item: (rank.get(item[0], 99), item[0])))


class _BottomK:
    """The ``k`` rows with the smallest random keys seen so far (a uniform sample)."""

    def __init__(self, k: int):
        self.k = k
        self.rows: pa.Table | None = None

    def add(self, rows: pa.Table) -> None:
        combined = rows if self.rows is None else pa.concat_tables([self.rows, rows])
        if combined.num_rows > self.k:
            keys = combined.column("_key").to_numpy()
            keep = np.sort(np.argpartition(keys, self.k - 1)[: self.k])
            combined = combined.take(keep)
        self.rows = combined


def sample_catalogue(
    path: Path,
    out_dir: Path,
    per_class: int,
    seed: int = 0,
    groups: tuple[str, ...] = MK_LETTERS,
    columns: CatalogueColumns = CatalogueColumns(),
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    overwrite: bool = False,
) -> SampleSummary:
    """Stratified random sample of ``per_class`` rows per group, in one streaming pass.

    Every row gets a uniform key from ``numpy.random.default_rng(seed)`` drawn in file
    order, and each group keeps its ``per_class`` smallest keys: a uniform sample without
    replacement that depends on the seed and the file only (not on the block size).
    A group with fewer rows gives all of them (reported in ``short``).

    Writes ``OUT/obsids_<group>.txt`` (one obsid per line, the list format LAMOST's search
    page accepts), ``OUT/obsids.txt`` (all groups), ``OUT/sample.csv`` (``mk_group`` plus
    every catalogue column) and ``OUT/sample.json``.
    """
    if per_class < 1:
        raise ValueError("per_class must be at least 1")
    path, out_dir = Path(path), Path(out_dir)
    _prepare_out_dir(out_dir, overwrite, "obsids*.txt")
    rng = np.random.default_rng(seed)
    kept = {group: _BottomK(per_class) for group in groups}
    available: dict[str, int] = {}
    rows = 0
    for batch in read_batches(path, columns, block_bytes):
        keys = rng.random(batch.num_rows)
        rows += batch.num_rows
        batch = batch.append_column("_key", pa.array(keys))
        for group, table in _group_tables(batch, columns):
            available[group] = available.get(group, 0) + table.num_rows
            if group in kept:
                kept[group].add(table)
    chosen = {g: _by_obsid(k.rows, columns.obsid) for g, k in kept.items() if k.rows is not None}
    summary = SampleSummary(
        catalogue=str(path),
        seed=seed,
        per_class=per_class,
        rows=rows,
        available=_ordered(available),
        sampled={group: table.num_rows for group, table in chosen.items()},
    )
    summary.short = {g: per_class - summary.sampled.get(g, 0) for g in groups}
    summary.short = {g: n for g, n in summary.short.items() if n > 0}
    summary.files = _write_sample(chosen, out_dir, columns.obsid)
    (out_dir / "sample.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def _by_obsid(rows: pa.Table, obsid: str) -> pa.Table:
    return rows.drop_columns(["_key"]).sort_by(obsid)


def _write_sample(chosen: dict[str, pa.Table], out_dir: Path, obsid: str) -> dict[str, str]:
    """Obsid lists per group and for all, and one CSV with a leading ``mk_group`` column."""
    files = {}
    everything = []
    labelled = []
    for group, table in chosen.items():
        obsids = [str(value) for value in table.column(obsid).to_pylist()]
        target = out_dir / f"obsids_{group}.txt"
        target.write_text("".join(f"{value}\n" for value in obsids))
        files[group] = str(target)
        everything.extend(obsids)
        labelled.append(table.add_column(0, "mk_group", pa.array([group] * table.num_rows)))
    (out_dir / "obsids.txt").write_text("".join(f"{value}\n" for value in everything))
    files["all"] = str(out_dir / "obsids.txt")
    if labelled:
        pacsv.write_csv(pa.concat_tables(labelled), out_dir / "sample.csv")
        files["csv"] = str(out_dir / "sample.csv")
    return files
