"""Goodreads (UCSD Book Graph, Wan & McAuley RecSys'18) shelves as user sequences.

Reads ``goodreads_interactions_<genre>.json(.gz)`` (``goodreads-<genre>``) or the complete
``goodreads_interactions_dedup.json(.gz)`` (``goodreads``). The time of an interaction is
``--time-field`` (``date_added`` by default; format ``Thu Aug 17 15:15:28 -0700 2017``); rows with
an empty or unparsable date are dropped. ``goodreads_interactions.csv`` has no timestamps and is
refused. A rating of 0 means "not rated".

Paper settings: MA-GNN (Children, Comics) keeps ratings >= 4 with users and books of at least 10
(the defaults).
"""

import os

import pandas as pd

from recbole_ext.data.convert.common import (
    RawFormatError, Source, add_core_arguments, add_rating_argument, date_to_seconds, drop_rows,
    find_file, find_files, finish_rating_sequences,
)

RELEASE = "https://mengtingwan.github.io/data/goodreads.html (UCSD Book Graph)"
DATE_FORMAT = "%a %b %d %H:%M:%S %z %Y"
TIME_FIELDS = ("date_added", "date_updated", "read_at", "started_at")


def _patterns(genre):
    stem = "goodreads_interactions_dedup" if genre is None else f"goodreads_interactions_{genre}"
    return [f"{stem}.json.gz", f"{stem}.json"]


def _read(path, time_field, report):
    chunks = []
    for chunk in pd.read_json(path, lines=True, chunksize=200_000, dtype=False):
        missing = {"user_id", "book_id", "rating", time_field} - set(chunk.columns)
        if missing:
            raise RawFormatError(f"{path}: missing key(s) {', '.join(sorted(missing))}")
        chunks.append(pd.DataFrame({
            "user_id": chunk["user_id"].astype(str), "item_id": chunk["book_id"].astype(str),
            "rating": pd.to_numeric(chunk["rating"], errors="coerce"),
            "is_read": chunk.get("is_read", pd.Series(True, index=chunk.index)).astype(bool),
            "date": chunk[time_field].astype(str),
        }))
    frame = pd.concat(chunks, ignore_index=True)
    report.note_read(f"shelf rows from {os.path.basename(path)}", len(frame))
    return frame


def source_for(name):
    genre = None if name == "goodreads" else name[len("goodreads-"):].replace("-", "_")
    patterns = _patterns(genre)

    def add_arguments(parser):
        parser.add_argument("--time-field", choices=TIME_FIELDS, default="date_added",
                            help="which date is the interaction time (default date_added)")
        parser.add_argument("--require-read", action="store_true",
                            help="keep only shelves marked is_read")
        add_rating_argument(parser, 4.0)
        add_core_arguments(parser, user_core=10, item_core=10, iterative=True)

    def convert(input_dir, out_prefix, args, report):
        path = find_file(input_dir, patterns, f"goodreads {genre or 'complete'} interactions",
                         required=False)
        if path is None:
            if find_files(input_dir, ["goodreads_interactions.csv"]):
                raise RawFormatError(
                    "goodreads_interactions.csv has no timestamps, so it cannot give sequences; "
                    f"download {patterns[0]} instead")
            find_file(input_dir, patterns, f"goodreads {genre or 'complete'} interactions")
        frame = _read(path, args.time_field, report)
        if args.require_read:
            frame = drop_rows(frame, ~frame["is_read"].to_numpy(), "shelves not marked read", report)
        frame["timestamp"] = date_to_seconds(frame["date"].where(frame["date"].ne("")), DATE_FORMAT)
        finish_rating_sequences(frame, args, report, out_prefix)

    return Source(
        name, f"Goodreads {genre or 'complete'} shelves as user sequences (MA-GNN).",
        " or ".join(patterns), RELEASE,
        lambda input_dir: bool(find_files(input_dir, patterns)), add_arguments, convert,
    )


SOURCES = [source_for(name) for name in ("goodreads", "goodreads-children", "goodreads-comics")]
