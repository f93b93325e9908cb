"""Netflix Prize ratings as user sequences: the official ``training_set/mv_*.txt`` files or the
Kaggle mirror's ``combined_data_*.txt`` (both: a ``MovieID:`` line, then ``CustomerID,Rating,Date``
lines). Dates have day granularity; ties keep the raw order.

Paper settings: HUGT uses Netflix without published filters (376,076 users, 17,673 items after its
preprocessing); the default here is users and items with at least 5 ratings **[ours]**.
"""


import pandas as pd

from recbole_ext.data.convert.common import (
    Source, add_core_arguments, add_rating_argument, date_to_seconds, find_files, finish_rating_sequences,
    MissingRawFileError,
)

PATTERNS = ("combined_data_*.txt", "training_set/mv_*.txt", "mv_*.txt")


def _read_blocks(path):
    raw = pd.read_csv(path, header=None, names=["customer", "rating", "date"], dtype=str,
                      keep_default_na=False)
    is_movie_line = raw["rating"].eq("") & raw["customer"].str.endswith(":")
    movie = raw["customer"].where(is_movie_line).str[:-1].ffill()
    body = ~is_movie_line.to_numpy()
    return pd.DataFrame({
        "user_id": raw["customer"].to_numpy()[body], "item_id": movie.to_numpy()[body],
        "rating": pd.to_numeric(raw["rating"][body], errors="coerce").to_numpy(),
        "date": raw["date"].to_numpy()[body],
    })


def convert(input_dir, out_prefix, args, report):
    paths = find_files(input_dir, PATTERNS)
    if not paths:
        raise MissingRawFileError(f"netflix: none of {', '.join(PATTERNS)} is in {input_dir}")
    frame = pd.concat([_read_blocks(p) for p in paths], ignore_index=True)
    report.note_read(f"ratings from {len(paths)} file(s)", len(frame))
    frame["timestamp"] = date_to_seconds(frame["date"], "%Y-%m-%d")
    finish_rating_sequences(frame, args, report, out_prefix)


def add_arguments(parser):
    add_rating_argument(parser, None)
    add_core_arguments(parser, user_core=5, item_core=5, iterative=True)


SOURCES = [Source(
    "netflix", "Netflix Prize ratings as user sequences (HUGT).",
    "training_set/mv_*.txt or combined_data_*.txt",
    "https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data (or the original nf_prize_dataset.tar.gz)",
    lambda input_dir: bool(find_files(input_dir, PATTERNS)), add_arguments, convert,
)]
