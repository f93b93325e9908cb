"""Shared helpers of the raw-to-atomic converters.

Every converter reads raw public files into a pandas frame, applies the filters the papers used
(rating threshold, de-duplication, k-core, minimum session length) through the functions here,
and writes RecBole atomic files with :func:`write_atomic` into the temporary folder that
:func:`atomic_output` hands it. Nothing here loops over rows in Python: the filters are
``value_counts``/``groupby`` passes, repeated only until a k-core is stable.
"""

import argparse
import contextlib
import csv
import glob
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd


class MissingRawFileError(ValueError):
    """A raw file a converter needs is not in the input folder."""


class RawFormatError(ValueError):
    """A raw file does not look like the public release it should be (wrong header, columns)."""


@dataclass
class Source:
    """One convertible public dataset.

    ``name`` is the dataset name written (``<name>/<name>.inter``); ``needs`` lists the raw files
    in words (alternatives joined by ``or``); ``release`` says where the public release lives;
    ``present(dir)`` tells whether the raw files are in a folder; ``add_arguments(parser)`` adds
    the source's options (their defaults are the paper settings); ``convert(input_dir,
    out_prefix, args, report)`` writes ``<out_prefix>.inter`` (and ``.item``, ``.query``...).
    """

    name: str
    description: str
    needs: str
    release: str
    present: Callable[[str], bool]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    convert: Callable[[str, str, argparse.Namespace, "Report"], None]

    def command(self, raw_dir):
        """The command line that converts ``raw_dir`` with this source."""
        return f"python -m recbole_ext.data.convert {self.name} --input {raw_dir}"


class Report:
    """Counts of what a conversion read, kept and dropped (with reasons), printed as it goes."""

    def __init__(self, source_name, out=print):
        self.source_name = source_name
        self.out = out
        self.read: List[Tuple[str, int]] = []
        self.dropped: List[Tuple[str, int]] = []
        self.written: List[Tuple[str, int]] = []

    def note_read(self, what, count):
        self.read.append((what, int(count)))
        self.out(f"[{self.source_name}] read {int(count):,} {what}")

    def note_drop(self, reason, count):
        if count:
            self.dropped.append((reason, int(count)))
            self.out(f"[{self.source_name}] dropped {int(count):,} {reason}")

    def note_written(self, path, rows):
        self.written.append((os.path.basename(path), int(rows)))

    def note(self, message):
        self.out(f"[{self.source_name}] {message}")

    def summary(self, frame, user, item):
        self.out(
            f"[{self.source_name}] kept {len(frame):,} interactions, "
            f"{frame[user].nunique():,} users/sessions, {frame[item].nunique():,} items"
        )

    def print_written(self):
        for name, rows in self.written:
            self.out(f"[{self.source_name}] wrote {name}: {rows:,} rows")


# --------------------------------------------------------------------------------------------
# Writing


ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def clean_text(values: pd.Series) -> pd.Series:
    """Make free text safe for RecBole's reader: no tabs/newlines (they split cells and rows),
    no leading double quote (pandas would start a quoted field)."""
    text = values.where(values.notna(), "").astype(str)
    dirty = text.str.contains(r'[\t\r\n]|^[\s"]|\s$', regex=True).to_numpy()
    if dirty.any():  # most ids are clean: only the dirty few go through the substitutions
        fixed = text[dirty].str.replace(r"[\t\r\n]+", " ", regex=True).str.strip().str.lstrip('"')
        text = text.copy()
        text[dirty] = fixed
    return text


def write_atomic(frame: pd.DataFrame, path: str, fields: Sequence[Tuple[str, str]], report=None):
    """Write ``frame`` as a RecBole atomic file: typed header, tab separated, ``\\n`` endings.

    ``fields`` is ``[(column, type), ...]`` in file order. Token columns are cleaned of tabs and
    newlines; floats are written as written by pandas (full precision).
    """
    if path.endswith(".inter") and len(frame) == 0:
        dropped = "; ".join(f"{count:,} {reason}" for reason, count in (report.dropped if report else []))
        raise ValueError(f"no interactions left to write to {os.path.basename(path)} after filtering "
                         f"(dropped: {dropped or 'nothing'}); loosen the filter options")
    columns = {}
    for name, ftype in fields:
        if ftype not in ATOMIC_TYPES:
            raise ValueError(f"unknown atomic type {ftype!r} for field {name!r}")
        values = frame[name]
        columns[name] = pd.to_numeric(values, errors="coerce").astype(float) if ftype == "float" else clean_text(values)
    body = pd.DataFrame(columns)
    header = "\t".join(f"{name}:{ftype}" for name, ftype in fields)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(header + "\n")
        body.to_csv(handle, sep="\t", header=False, index=False, lineterminator="\n",
                    quoting=csv.QUOTE_NONE, escapechar=None)
    if report is not None:
        report.note_written(path, len(body))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_conversions(output_dir: str) -> List[str]:
    """Remove the ``.<name>.converting-*`` and ``.<name>.old-*`` folders that a conversion of
    ``output_dir`` killed by SIGKILL/SIGTERM (no ``finally`` runs) left beside it. Each folder's
    name carries its creator's process id; a folder whose process is still alive belongs to a
    conversion in progress and is kept. Returns the removed paths."""
    output_dir = os.path.abspath(output_dir)
    parent, name = os.path.dirname(output_dir), os.path.basename(output_dir)
    removed = []
    for kind in ("converting", "old"):
        for path in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.{kind}-*")):
            match = re.match(r"(\d+)-", os.path.basename(path)[len(f".{name}.{kind}-"):])
            if match and int(match.group(1)) != os.getpid() and _pid_alive(int(match.group(1))):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_output(output_dir: str):
    """Yield a temporary folder next to ``output_dir``; on success it replaces ``output_dir`` by
    a rename, on any exception it is removed, so no half-written dataset is ever left. Folders a
    killed conversion left behind are removed first (:func:`remove_stale_conversions`)."""
    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    remove_stale_conversions(output_dir)
    tag = f".{os.path.basename(output_dir)}"
    tmp_dir = tempfile.mkdtemp(prefix=f"{tag}.converting-{os.getpid()}-", dir=parent)
    try:
        yield tmp_dir
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    old_dir = None
    if os.path.exists(output_dir):
        old_dir = tempfile.mkdtemp(prefix=f"{tag}.old-{os.getpid()}-", dir=parent)
        os.rmdir(old_dir)
        os.rename(output_dir, old_dir)
    os.rename(tmp_dir, output_dir)
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Reading


def find_file(input_dir: str, patterns: Sequence[str], what: str, required=True) -> Optional[str]:
    """First file in ``input_dir`` (or its ``archive/`` sub-folder) matching one of the glob
    ``patterns`` in order; a clear error naming them if none does and ``required``."""
    for pattern in patterns:
        for base in (input_dir, os.path.join(input_dir, "archive")):
            matches = sorted(glob.glob(os.path.join(base, pattern)))
            if matches:
                return matches[0]
    if required:
        raise MissingRawFileError(
            f"{what}: none of {', '.join(patterns)} is in {input_dir}"
        )
    return None


def find_files(input_dir: str, patterns: Sequence[str]) -> List[str]:
    """Every file in ``input_dir`` (or ``archive/``) matching any of ``patterns``, sorted."""
    found = set()
    for pattern in patterns:
        for base in (input_dir, os.path.join(input_dir, "archive")):
            found.update(glob.glob(os.path.join(base, pattern)))
    return sorted(found)


def any_present(*patterns):
    """A ``present`` test for :class:`Source`: some file matches one of the patterns."""
    return lambda input_dir: bool(find_files(input_dir, patterns))


def all_present(*pattern_groups):
    """A ``present`` test: for every group of alternative patterns some file matches."""
    return lambda input_dir: all(find_files(input_dir, group) for group in pattern_groups)


def normalise_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Lower-case column names without ``_``/``.``, so ``sessionId``, ``session_id`` and
    ``sessionid`` are one name (the DIGINETICA samples renamed the official headers)."""
    frame.columns = [str(c).strip().lower().replace("_", "").replace(".", "") for c in frame.columns]
    return frame


def require_columns(frame: pd.DataFrame, columns: Sequence[str], path: str):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RawFormatError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
        )


def date_to_seconds(values: pd.Series, fmt: Optional[str] = None) -> pd.Series:
    """Epoch seconds (float, UTC) of date/datetime strings; NaN where a value does not parse."""
    parsed = pd.to_datetime(values, format=fmt, utc=True, errors="coerce")
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    # rounded to microseconds: the nanosecond division leaves float noise (…0.1230001)
    return ((parsed - epoch) / pd.Timedelta(seconds=1)).round(6)


def numeric(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


# --------------------------------------------------------------------------------------------
# Filters


def drop_rows(frame: pd.DataFrame, bad_mask, reason: str, report: Report) -> pd.DataFrame:
    bad_mask = np.asarray(bad_mask, dtype=bool)
    report.note_drop(reason, int(bad_mask.sum()))
    return frame.loc[~bad_mask]


def drop_duplicates(frame: pd.DataFrame, columns: Sequence[str], report: Report, what="duplicate rows"):
    duplicated = frame.duplicated(subset=list(columns), keep="first").to_numpy()
    return drop_rows(frame, duplicated, f"{what} (same {', '.join(columns)})", report)


def _count_mask(frame, column, min_count):
    counts = frame[column].map(frame[column].value_counts())
    return (counts < min_count).to_numpy()


def k_core(frame, user, item, min_user, min_item, report, iterative=True,
           user_word="users", item_word="items"):
    """Drop items with fewer than ``min_item`` rows, then users with fewer than ``min_user``;
    repeat until both hold (``iterative``) or stop after one pass (SASRec's and EMBSR's scripts)."""
    if min_user <= 1 and min_item <= 1:
        return frame
    rounds = 0
    while True:
        rounds += 1
        before = len(frame)
        if min_item > 1:
            frame = drop_rows(frame, _count_mask(frame, item, min_item),
                              f"rows of {item_word} with fewer than {min_item} rows", report)
        if min_user > 1:
            frame = drop_rows(frame, _count_mask(frame, user, min_user),
                              f"rows of {user_word} with fewer than {min_user} rows", report)
        if not iterative or len(frame) == before or len(frame) == 0:
            break
        if (min_item <= 1 or not _count_mask(frame, item, min_item).any()) and (
            min_user <= 1 or not _count_mask(frame, user, min_user).any()
        ):
            break
    if iterative:
        report.note(f"k-core (users >= {min_user}, items >= {min_item}) stable after {rounds} round(s)")
    return frame


def macro_run_starts(frame: pd.DataFrame, session: str, item: str) -> np.ndarray:
    """True where a row starts a run of consecutive rows on the same item in its session
    (``frame`` must be in session, time order)."""
    new_session = frame[session].ne(frame[session].shift()).to_numpy()
    new_item = frame[item].ne(frame[item].shift()).to_numpy()
    return new_session | new_item


def min_session_length(frame, session, item, min_length, report, macro=False, word="sessions"):
    """Drop sessions with fewer than ``min_length`` item events; with ``macro`` the length counts
    runs of consecutive events on one item (micro-behaviours merge into one macro item)."""
    if min_length <= 1:
        return frame
    if macro:
        runs = pd.Series(macro_run_starts(frame, session, item), index=frame.index)
        lengths = runs.groupby(frame[session]).transform("sum")
    else:
        lengths = frame.groupby(session)[item].transform("size")
    unit = "macro items" if macro else "events"
    return drop_rows(frame, (lengths < min_length).to_numpy(),
                     f"rows of {word} with fewer than {min_length} {unit}", report)


def sort_events(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Stable sort, so events tied on every key keep their raw order (RecBole's own sort is
    stable too, so the written order is the order every model sees)."""
    return frame.sort_values(list(keys), kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Command-line options shared by the sources


def add_core_arguments(parser, user_core=1, item_core=1, iterative=True, user_word="user"):
    parser.add_argument("--user-core", type=int, default=user_core,
                        help=f"keep {user_word}s with at least this many interactions (default {user_core})")
    parser.add_argument("--item-core", type=int, default=item_core,
                        help=f"keep items with at least this many interactions (default {item_core})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--iterative-core", dest="iterative_core", action="store_true", default=iterative,
                       help="repeat the k-core filter until stable" + (" (default)" if iterative else ""))
    group.add_argument("--single-pass-core", dest="iterative_core", action="store_false",
                       help="one pass: items, then users" + ("" if iterative else " (default)"))


def add_rating_argument(parser, min_rating=None):
    parser.add_argument("--min-rating", type=float, default=min_rating,
                        help="keep ratings >= this value as positives (default: keep all"
                             + (f", paper setting {min_rating})" if min_rating is not None else ")"))


def add_session_arguments(parser, min_session_length=2, min_item_count=1):
    parser.add_argument("--min-session-length", type=int, default=min_session_length,
                        help=f"keep sessions with at least this many items (default {min_session_length})")
    parser.add_argument("--min-item-count", type=int, default=min_item_count,
                        help=f"keep items seen at least this many times (default {min_item_count})")


def check_positive(args, *names):
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")


RATING_INTER_FIELDS = (("user_id", "token"), ("item_id", "token"), ("rating", "float"), ("timestamp", "float"))


def finish_rating_sequences(frame, args, report, out_prefix, fields=RATING_INTER_FIELDS,
                            dedup_on=("user_id", "item_id", "timestamp")):
    """The common tail of the explicit-feedback sources (Amazon, MovieLens, Netflix, Steam,
    Goodreads): rating threshold, de-duplication, k-core, stable time sort, ``.inter``.

    ``frame`` has ``user_id``, ``item_id``, ``timestamp`` (and ``rating`` where the source has
    one), in raw file order. Returns the kept frame.
    """
    check_positive(args, "user_core", "item_core")
    frame = drop_rows(frame, frame["user_id"].isna() | frame["item_id"].isna()
                      | frame["user_id"].eq("") | frame["item_id"].eq(""),
                      "rows without a user or item id", report)
    frame = drop_rows(frame, frame["timestamp"].isna(), "rows without a parsable time", report)
    if getattr(args, "min_rating", None) is not None:
        frame = drop_rows(frame, ~(frame["rating"] >= args.min_rating),
                          f"rows rated below {args.min_rating:g} (not positives)", report)
    # sorted first, so that de-duplication keeps a user's earliest copy of an interaction
    frame = sort_events(frame, ["user_id", "timestamp"])
    frame = drop_duplicates(frame, dedup_on, report)
    frame = k_core(frame, "user_id", "item_id", args.user_core, args.item_core, report,
                   iterative=args.iterative_core)
    write_atomic(frame, out_prefix + ".inter", fields, report)
    report.summary(frame, "user_id", "item_id")
    return frame


def restrict_side_table(table, key, kept_ids):
    """Rows of a side-information table whose ``key`` is among the kept interaction ids, so
    RecBole does not add never-seen ids to the token map (which would change full ranking)."""
    return table.loc[table[key].isin(pd.unique(kept_ids))].drop_duplicates(subset=[key], keep="first")
