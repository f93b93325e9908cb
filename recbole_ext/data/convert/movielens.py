"""MovieLens ml-1m (``ratings.dat``, ``::``-separated, no header; ``movies.dat`` Latin-1;
``users.dat``) and ml-20m (``ratings.csv`` and ``movies.csv`` with headers) as user sequences.

Paper settings: DGSR (ml-1m) keeps every rating as implicit feedback with users and items of at
least 5 actions (the default); HUGT (ml-1m) keeps everything; MA-GNN (ml-20m) keeps ratings >= 4
with users and items of at least 10 (the ml-20m default).
"""

import csv
import os

import pandas as pd

from recbole_ext.data.convert.common import (
    Source, add_core_arguments, add_rating_argument, any_present, find_file,
    finish_rating_sequences, restrict_side_table, write_atomic,
)

RELEASE = "https://grouplens.org/datasets/movielens/"


def _read_double_colon(path, names, encoding="utf-8"):
    # '::' split on ':' gives empty cells between the values; the C parser is much faster than
    # the regex separator, and ratings never contain ':'.
    raw = pd.read_csv(path, sep=":", header=None, dtype=str, encoding=encoding, keep_default_na=False,
                      quoting=csv.QUOTE_NONE)
    raw = raw.iloc[:, ::2]
    raw.columns = names
    return raw


def convert_ml1m(input_dir, out_prefix, args, report):
    path = find_file(input_dir, ["ratings.dat"], "ml-1m ratings")
    ratings = _read_double_colon(path, ["user_id", "item_id", "rating", "timestamp"])
    report.note_read(f"ratings from {os.path.basename(path)}", len(ratings))
    ratings["rating"] = pd.to_numeric(ratings["rating"], errors="coerce")
    ratings["timestamp"] = pd.to_numeric(ratings["timestamp"], errors="coerce").astype(float)
    kept = finish_rating_sequences(ratings, args, report, out_prefix)

    movies_path = find_file(input_dir, ["movies.dat"], "ml-1m movies", required=False)
    if movies_path:
        lines = pd.read_csv(movies_path, sep="\x1f", header=None, names=["line"], dtype=str,
                            encoding="latin-1", keep_default_na=False, quoting=csv.QUOTE_NONE)["line"]
        parts = lines.str.split("::", n=2, expand=True)
        movies = pd.DataFrame({"item_id": parts[0], "title": parts[1],
                               "genre": parts[2].str.replace("|", " ", regex=False)})
        movies = restrict_side_table(movies, "item_id", kept["item_id"])
        write_atomic(movies, out_prefix + ".item",
                     [("item_id", "token"), ("title", "token_seq"), ("genre", "token_seq")], report)
    users_path = find_file(input_dir, ["users.dat"], "ml-1m users", required=False)
    if users_path:
        users = _read_double_colon(users_path, ["user_id", "gender", "age", "occupation", "zip_code"])
        users = restrict_side_table(users, "user_id", kept["user_id"])
        write_atomic(users, out_prefix + ".user",
                     [("user_id", "token"), ("gender", "token"), ("age", "token"),
                      ("occupation", "token"), ("zip_code", "token")], report)


def convert_ml20m(input_dir, out_prefix, args, report):
    path = find_file(input_dir, ["ratings.csv"], "ml-20m ratings")
    ratings = pd.read_csv(path, dtype=str, keep_default_na=False)
    report.note_read(f"ratings from {os.path.basename(path)}", len(ratings))
    ratings = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    ratings["rating"] = pd.to_numeric(ratings["rating"], errors="coerce")
    ratings["timestamp"] = pd.to_numeric(ratings["timestamp"], errors="coerce").astype(float)
    kept = finish_rating_sequences(ratings, args, report, out_prefix)
    movies_path = find_file(input_dir, ["movies.csv"], "ml-20m movies", required=False)
    if movies_path:
        movies = pd.read_csv(movies_path, dtype=str, keep_default_na=False)  # titles are quoted
        movies = pd.DataFrame({"item_id": movies["movieId"], "title": movies["title"],
                               "genre": movies["genres"].str.replace("|", " ", regex=False)})
        movies = restrict_side_table(movies, "item_id", kept["item_id"])
        write_atomic(movies, out_prefix + ".item",
                     [("item_id", "token"), ("title", "token_seq"), ("genre", "token_seq")], report)


def _arguments(min_rating, core):
    def add(parser):
        add_rating_argument(parser, min_rating)
        add_core_arguments(parser, user_core=core, item_core=core, iterative=True)
    return add


SOURCES = [
    Source("ml-1m", "MovieLens 1M ratings as user sequences (DGSR, HUGT).",
           "ratings.dat (movies.dat, users.dat optional)", RELEASE + " (ml-1m.zip)",
           any_present("ratings.dat"), _arguments(None, 5), convert_ml1m),
    Source("ml-20m", "MovieLens 20M ratings as user sequences (MA-GNN).",
           "ratings.csv (movies.csv optional)", RELEASE + " (ml-20m.zip)",
           any_present("ratings.csv"), _arguments(4.0, 10), convert_ml20m),
]
