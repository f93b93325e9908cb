"""Steam reviews (Kang & McAuley, ICDM'18) as user sequences.

Every line of ``steam_reviews.json(.gz)`` is a Python-2 dict literal (single quotes, ``u''``
strings), not JSON. The fields used (``username``, ``product_id``, ``date``, ``hours``) are taken
with one vectorised regular expression per field; a line where that fails is parsed with
``ast.literal_eval`` (only those lines), and a line that fails both is dropped and counted.
Users are keyed by ``username`` because ``user_id`` is present only on some reviews.

Paper settings: SASRec's Steam (as HUGT uses it) keeps one review per (user, game) and users and
games with at least 5 reviews (the defaults); HUGT does not publish further filters.
"""

import ast
import gzip
import os

import pandas as pd

from recbole_ext.data.convert.common import (
    Source, add_core_arguments, any_present, date_to_seconds, drop_rows, find_file,
    finish_rating_sequences,
)

PATTERNS = ("steam_reviews.json.gz", "steam_reviews.json")
_STRING = r"""u?'{key}': u?(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")"""
_NUMBER = r"""u?'{key}': (-?[0-9.eE+]+)"""


def _extract_string(lines, key):
    found = lines.str.extract(_STRING.format(key=key))
    return found[0].fillna(found[1])


def _read_lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return pd.Series(handle.read().splitlines(), dtype=object)


def _literal_fallback(lines):
    """Parse the few lines the regular expressions missed; ``None`` where even that fails."""
    rows = []
    for line in lines:  # only the rare malformed lines reach here
        try:
            record = ast.literal_eval(line)
            rows.append((str(record.get("username", "")), str(record.get("product_id", "")),
                         str(record.get("date", "")), record.get("hours")))
        except (ValueError, SyntaxError):
            rows.append((None, None, None, None))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "date", "play_hours"], index=lines.index)


def convert(input_dir, out_prefix, args, report):
    path = find_file(input_dir, PATTERNS, "steam reviews")
    lines = _read_lines(path)
    lines = lines[lines.str.strip().ne("")]
    report.note_read(f"review lines from {os.path.basename(path)}", len(lines))
    frame = pd.DataFrame({
        "user_id": _extract_string(lines, "username"),
        "item_id": _extract_string(lines, "product_id"),
        "date": _extract_string(lines, "date"),
        "play_hours": pd.to_numeric(lines.str.extract(_NUMBER.format(key="hours"))[0], errors="coerce"),
    }, index=lines.index)
    missed = frame[["user_id", "item_id", "date"]].isna().any(axis=1)
    if missed.any():
        frame.loc[missed] = _literal_fallback(lines[missed])
        report.note(f"{int(missed.sum()):,} line(s) parsed with ast.literal_eval")
    frame = drop_rows(frame, frame["user_id"].isna(), "lines that are not a Python dict literal", report)
    frame["timestamp"] = date_to_seconds(frame["date"], "%Y-%m-%d")
    frame["play_hours"] = pd.to_numeric(frame["play_hours"], errors="coerce")
    dedup_on = ("user_id", "item_id") if args.dedup == "user-item" else ("user_id", "item_id", "timestamp")
    finish_rating_sequences(
        frame.reset_index(drop=True), args, report, out_prefix,
        fields=(("user_id", "token"), ("item_id", "token"), ("timestamp", "float"), ("play_hours", "float")),
        dedup_on=dedup_on,
    )


def add_arguments(parser):
    parser.add_argument("--dedup", choices=["user-item", "user-item-time"], default="user-item",
                        help="keep the first review per (user, game) (default, SASRec) or per (user, game, date)")
    add_core_arguments(parser, user_core=5, item_core=5, iterative=True)


SOURCES = [Source(
    "steam", "Steam reviews as user sequences (HUGT, SASRec).", "steam_reviews.json.gz",
    "https://cseweb.ucsd.edu/~jmcauley/datasets.html#steam_data",
    any_present(*PATTERNS), add_arguments, convert,
)]
