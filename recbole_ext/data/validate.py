"""Strict validation of RecBole atomic files, before RecBole reads them.

RecBole reports a malformed atomic file with a pandas traceback from deep inside its loader (or
not at all: a tab inside a value shifts every later column). :func:`validate_atomic_dataset`
checks every ``<dataset>.<suffix>`` file of a dataset folder and raises :class:`AtomicFileError`
with one line ``FILE:LINE: field 'NAME': what is wrong (how to fix)``.

Checked: the header (``\\n`` line end, ``name:type`` cells with a RecBole type, no duplicated
name); every row's column count; values that start with a double quote (RecBole's pandas reader
would open a quoted field across tabs and lines); float and float_seq values parse; the file is
not empty and has a data row; a side-information file (``.item``, ``.user``, or any file sharing a
token field with ``.inter``) has ids that occur in the interactions.

Vectorised: the whole file is one numpy byte array; rows and separators are located with
``flatnonzero``/``cumsum``, and values are parsed with pandas' C reader, so a file of a million
lines takes about a second.
"""

import csv
import io
import os
import re

import numpy as np
import pandas as pd

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
# Suffixes in a dataset folder that are not atomic files.
NON_ATOMIC_SUFFIXES = ("yaml", "yml", "md", "txt", "json", "zip", "gz", "pth", "pkl", "log", "csv")
# Side files that RecBole joins on the user/item id; they must share a field with .inter.
JOINED_SUFFIXES = ("item", "user")
# Values pandas (hence RecBole) reads as a missing float rather than failing on.
NA_LIKE = {"", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "<NA>", "-nan",
           "inf", "-inf", "+inf", "Inf", "-Inf", "infinity", "-infinity", "Infinity", "-Infinity"}
NEWLINE, QUOTE = 10, 34


class AtomicFileError(ValueError):
    """A malformed atomic file; the message is one line ``FILE:LINE: field 'NAME': problem``."""


def _fail(path, line, problem, field=None):
    where = f"{path}:{line}: " + (f"field '{field}': " if field is not None else "")
    raise AtomicFileError(where + problem)


class _ParsedFile:
    """Header and row layout of one atomic file (bytes located, values parsed on demand)."""

    def __init__(self, path, fields, types, data, body_start, row_starts, row_ends, row_lines, sep):
        self.path, self.fields, self.types = path, fields, types
        self.data, self.body_start, self.sep = data, body_start, sep
        self.row_starts, self.row_ends, self.row_lines = row_starts, row_ends, row_lines
        self._columns = {}

    def read(self, fields, dtype=str):
        """Columns ``fields`` of every data row (row ``i`` is line ``row_lines[i]``), read by
        pandas' C parser; only the requested columns are materialised."""
        body = self.data[self.body_start:]
        return pd.read_csv(
            io.BytesIO(body), sep=self.sep, header=None, names=self.fields, usecols=list(fields),
            dtype=dtype, keep_default_na=dtype is not str, quoting=csv.QUOTE_NONE,
            engine="c" if len(self.sep) == 1 else "python", skip_blank_lines=True, encoding="utf-8",
        )

    def column(self, field):
        if field not in self._columns:
            self._columns[field] = self.read([field])[field]
        return self._columns[field]


def _line_of(data, offset):
    return int(np.count_nonzero(np.frombuffer(data[:offset], dtype=np.uint8) == NEWLINE)) + 1


def _check_header(path, data):
    header_end = data.find(b"\n")
    if header_end < 0:
        _fail(path, 1, "the header line does not end with a newline; RecBole cuts the last character of "
                       "the header, so add a line break after it and at least one data row")
    return header_end


def _parse_file(path, field_separator):
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.strip():
        _fail(path, 1, "empty file; write a header line of name:type cells and at least one data row, "
                       "or remove the file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        _fail(path, _line_of(data, error.start), f"not UTF-8 (byte {data[error.start]:#x}); re-encode the file as UTF-8")
    carriage = data.find(b"\r")
    if carriage >= 0:
        _fail(path, _line_of(data, carriage), "Windows line ending (\\r\\n); RecBole keeps the \\r in the "
                                              "last value, so write \\n line endings (e.g. dos2unix)")
    header_end = _check_header(path, data)
    header = data[:header_end].decode("utf-8")
    fields, types = [], []
    for cell in header.split(field_separator):
        parts = cell.split(":")
        if len(parts) != 2 or not parts[0].strip():
            _fail(path, 1, f"header cell {cell!r} is not name:type (one colon, e.g. item_id:token)",
                  field=parts[0] if parts else cell)
        name, ftype = parts
        if ftype not in ATOMIC_TYPES:
            _fail(path, 1, f"unknown type {ftype!r}; use one of {', '.join(ATOMIC_TYPES)}", field=name)
        if name in fields:
            _fail(path, 1, "duplicated field name in the header; rename or remove one of the columns", field=name)
        fields.append(name)
        types.append(ftype)

    buf = np.frombuffer(data, dtype=np.uint8)
    body_start = header_end + 1
    newlines = np.flatnonzero(buf[body_start:] == NEWLINE) + body_start
    starts = np.concatenate([[body_start], newlines + 1])
    ends = np.concatenate([newlines, [len(buf)]])
    keep = ends > starts  # pandas skips blank lines, and the file's final newline ends no row
    starts, ends = starts[keep], ends[keep]
    line_numbers = np.flatnonzero(keep) + 2
    if len(starts) == 0:
        _fail(path, 2, "no data rows after the header; add the rows or remove the file")

    sep_bytes = field_separator.encode("utf-8")
    if len(sep_bytes) == 1:
        sep_positions = np.flatnonzero(buf == sep_bytes[0])

        def seps_before(offsets):
            return np.searchsorted(sep_positions, offsets)

        counts = seps_before(ends) - seps_before(starts) + 1
    else:
        rows = pd.Series(data.decode("utf-8").split("\n")[1:])
        rows = rows[rows.ne("").to_numpy()]  # the same rows as starts/ends: blank lines skipped
        counts = rows.str.count(re.escape(field_separator)).to_numpy() + 1
    wrong = np.flatnonzero(counts != len(fields))
    if len(wrong):
        row = wrong[0]
        found = int(counts[row])
        if found < len(fields):
            _fail(path, int(line_numbers[row]),
                  f"row has {found} values but the header declares {len(fields)} fields; this value is "
                  f"missing (write an empty value between separators if it is unknown)", field=fields[found])
        _fail(path, int(line_numbers[row]),
              f"row has {found} values but the header declares {len(fields)} fields; a value probably "
              f"contains the separator {field_separator!r} (remove it from the text)", field=fields[-1])

    if len(sep_bytes) == 1:
        quotes = np.flatnonzero(buf[body_start:] == QUOTE) + body_start
        if len(quotes):
            previous = buf[quotes - 1]
            opening = quotes[(previous == sep_bytes[0]) | (previous == NEWLINE)]
            if len(opening):
                at = int(opening[0])
                row = int(np.searchsorted(starts, at, side="right") - 1)
                field = fields[int(seps_before(at) - seps_before(starts[row]))]
                _fail(path, int(line_numbers[row]),
                      "value starts with a double quote, which RecBole's reader takes as the start of a "
                      "quoted field spanning separators and lines; remove the leading quote", field=field)
    return _ParsedFile(path, fields, types, data, body_start, starts, ends, line_numbers, field_separator)


def _check_floats(parsed, seq_separator):
    plain = [f for f, t in zip(parsed.fields, parsed.types) if t == "float"]
    if plain:
        try:  # fast path: the C parser reads every float column as RecBole will
            parsed.read(plain, dtype=np.float64)
            plain = []
        except ValueError:
            pass  # locate the bad value below
    for field, ftype in zip(parsed.fields, parsed.types):
        if ftype == "float" and field in plain:
            values = parsed.column(field).str.strip()
            bad = pd.to_numeric(values, errors="coerce").isna() & ~values.isin(NA_LIKE)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                _fail(parsed.path, int(parsed.row_lines[row]),
                      f"value {values.iloc[row]!r} is not a number; fix it, leave it empty, or declare the "
                      f"field :token", field=field)
        elif ftype == "float_seq":
            pieces = parsed.column(field).str.split(seq_separator).explode().str.strip()
            bad = pd.to_numeric(pieces, errors="coerce").isna() & ~pieces.isin(NA_LIKE) & pieces.notna()
            if bad.any():
                row = int(pieces.index[np.flatnonzero(bad.to_numpy())[0]])
                _fail(parsed.path, int(parsed.row_lines[row]),
                      f"element {pieces[bad].iloc[0]!r} of the sequence is not a number (elements are "
                      f"separated by {seq_separator!r}); fix it or declare the field :token_seq", field=field)


def _check_side_file(parsed, suffix, inter, dataset):
    inter_tokens = {f for f, t in zip(inter.fields, inter.types) if t == "token"}
    shared = [f for f, t in zip(parsed.fields, parsed.types) if t == "token" and f in inter_tokens]
    if not shared:
        if suffix in JOINED_SUFFIXES:
            _fail(parsed.path, 1, f"no token field in common with {dataset}.inter ({', '.join(inter.fields)}); "
                                  f"RecBole joins .{suffix} on the {suffix} id field, so name it as in "
                                  f".inter", field=parsed.fields[0])
        return
    key = shared[0]  # RecBole's convention: the id is the first column of a side file
    side_ids = pd.Series(pd.unique(parsed.column(key)))
    if not side_ids.isin(pd.unique(inter.column(key))).any():
        _fail(parsed.path, int(parsed.row_lines[0]),
              f"none of its {len(side_ids)} ids occurs in {dataset}.inter, so no row would join; write the "
              f"ids exactly as in the interactions (same tokens, no prefix or zero padding)", field=key)


def validate_atomic_dataset(dataset_path: str, dataset: str, field_separator="\t", seq_separator=" ") -> None:
    """Check every atomic file ``<dataset_path>/<dataset>.<suffix>``; raise
    :class:`AtomicFileError` (a ``ValueError``) with one line naming file, line and field."""
    if not os.path.isdir(dataset_path):
        raise AtomicFileError(f"{dataset_path}: no such dataset folder")
    prefix = dataset + "."
    names = sorted(
        name for name in os.listdir(dataset_path)
        if name.startswith(prefix) and os.path.isfile(os.path.join(dataset_path, name))
        and name.rsplit(".", 1)[-1] not in NON_ATOMIC_SUFFIXES
    )
    inter_names = [n for n in names if n.endswith(".inter")]
    if not inter_names:
        raise AtomicFileError(
            f"{os.path.join(dataset_path, dataset + '.inter')}:0: missing interaction file; "
            f"every dataset needs {dataset}.inter (or benchmark {dataset}.<phase>.inter files)")
    parsed = {}
    for name in names:
        parsed[name] = _parse_file(os.path.join(dataset_path, name), field_separator)
        _check_floats(parsed[name], seq_separator)
    inter = parsed.get(prefix + "inter") or parsed[inter_names[0]]
    for name in names:
        if name in inter_names:
            continue
        _check_side_file(parsed[name], name[len(prefix):], inter, dataset)


# ---------------------------------------------------------------------------------------------
# Fields a model needs


class MissingFieldError(AtomicFileError):
    """The model needs a field the dataset's ``.inter`` file does not declare (or does not load)."""


# Model-specific needs beyond a sequential model's user, item and time fields: config key of
# the field and what it is for.
MODEL_FIELDS = {
    "EMBSR": (("OPERATION_FIELD", "operation", "micro-behaviour operations, e.g. op:token"),),
}
_SEQUENTIAL_FIELDS = (
    ("USER_ID_FIELD", "user id", "user_id:token"),
    ("ITEM_ID_FIELD", "item id", "item_id:token"),
    ("TIME_FIELD", "time", "timestamp:float; sequences are ordered by it"),
)


def _inter_header(dataset_path, dataset, field_separator):
    path = os.path.join(dataset_path, f"{dataset}.inter")
    if not os.path.isfile(path):
        candidates = sorted(n for n in os.listdir(dataset_path) if n.startswith(dataset + ".") and n.endswith(".inter"))
        if not candidates:
            return path, None
        path = os.path.join(dataset_path, candidates[0])
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n")
    return path, [cell.split(":", 1)[0] for cell in header.split(field_separator)]


def check_model_fields(config):
    """Raise :class:`MissingFieldError` (one line naming the model, the field and the file) when
    the model needs a field that ``<dataset>.inter`` does not declare or ``load_col`` drops."""
    from recbole.utils import ModelType

    needs = list(MODEL_FIELDS.get(config["model"], ()))
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        needs = list(_SEQUENTIAL_FIELDS) + needs
    if not needs or not os.path.isdir(config["data_path"]):
        return
    path, declared = _inter_header(config["data_path"], config["dataset"], config["field_separator"])
    if declared is None:
        return  # validate_atomic_dataset reports the missing file
    load_col = (config["load_col"] or {}).get("inter") if isinstance(config["load_col"], dict) else None
    for key, what, example in needs:
        name = config[key]
        if not name:
            raise MissingFieldError(
                f"{path}: {config['model']} needs the {what} field ({example}), and {key} is not set; "
                f"its header declares {', '.join(declared)}: add the column and set {key}"
            )
        if name not in declared:
            raise MissingFieldError(
                f"{path}: {config['model']} needs the {what} field '{name}' ({key}; {example}), which its "
                f"header does not declare (it has {', '.join(declared)})"
            )
        if load_col is not None and name not in load_col:
            raise MissingFieldError(
                f"{path}: {config['model']} needs the {what} field '{name}' ({key}), which load_col "
                f"does not load (load_col inter: {', '.join(load_col)}); add it to load_col"
            )
