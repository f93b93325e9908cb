"""Amazon review data (McAuley et al.), any category, as user sequences.

Reads, in this order of preference, whichever is in the input folder (or the file ``--file``
names): the 2014 5-core JSON lines ``reviews_<Cat>_5.json(.gz)``, the 2018 5-core
``<Cat>_5.json(.gz)``, the 2014 ratings CSV ``ratings_<Cat>.csv`` (``user,item,rating,time``) and
the 2018 ratings CSV ``<Cat>.csv`` whose columns are **reversed** (``item,user,rating,time``).
The column order follows the file name; ``--column-order`` overrides it, and a layout that
contradicts the ids' shapes (ASINs are 10 characters) is refused rather than silently swapped.

Paper settings: DGSR (Beauty, Games, CDs) keeps every review as implicit feedback with users and
items of at least 5 actions (the default); MA-GNN (CDs, Books) keeps ratings >= 4 with users and
items of at least 10 (``--min-rating 4 --user-core 10 --item-core 10``).
"""

import os

import pandas as pd

from recbole_ext.data.convert.common import (
    RawFormatError, Source, add_core_arguments, add_rating_argument, find_file, find_files,
    finish_rating_sequences,
)

RELEASE = ("https://jmcauley.ucsd.edu/data/amazon/ (2014) or "
           "https://nijianmo.github.io/amazon/ (2018)")

# Dataset-name slug -> the category as the raw file names spell it.
CATEGORIES = {
    "beauty": ["Beauty", "All_Beauty", "Luxury_Beauty"],
    "video-games": ["Video_Games"],
    "games": ["Video_Games"],
    "cds": ["CDs_and_Vinyl"],
    "books": ["Books"],
}
PAPER_SOURCES = ("beauty", "video-games", "cds", "books")


def category_files(slug):
    """Raw file names for a category slug (``musical-instruments`` -> ``Musical_Instruments``)."""
    names = CATEGORIES.get(slug) or ["_".join(part.capitalize() for part in slug.split("-"))]
    patterns = []
    for name in names:
        patterns += [f"reviews_{name}_5.json.gz", f"reviews_{name}_5.json"]
    for name in names:
        patterns += [f"{name}_5.json.gz", f"{name}_5.json"]
    for name in names:
        patterns.append(f"ratings_{name}.csv")
    for name in names:
        patterns.append(f"{name}.csv")
    return patterns


def _is_asin(values):
    return values.str.len().eq(10)


def _read_ratings_csv(path, order, report):
    raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    if raw.shape[1] != 4:
        raise RawFormatError(f"{path}: expected 4 columns (user/item, item/user, rating, time), found {raw.shape[1]}")
    report.note_read(f"ratings from {os.path.basename(path)}", len(raw))
    if order == "auto":
        order = "user-item" if os.path.basename(path).startswith("ratings_") else "item-user"
    user_col, item_col = (0, 1) if order == "user-item" else (1, 0)
    sample = raw.head(10000)
    if len(sample) and _is_asin(sample[user_col]).mean() > 0.9 > _is_asin(sample[item_col]).mean():
        raise RawFormatError(
            f"{path}: the column read as users holds 10-character ASINs, so the column order is not "
            f"{order}; pass --column-order {'item-user' if order == 'user-item' else 'user-item'}"
        )
    return pd.DataFrame({
        "user_id": raw[user_col], "item_id": raw[item_col],
        "rating": pd.to_numeric(raw[2], errors="coerce"),
        "timestamp": pd.to_numeric(raw[3], errors="coerce").astype(float),
    })


def _read_reviews_json(path, report):
    chunks = []
    reader = pd.read_json(path, lines=True, chunksize=200_000, dtype=False)
    for chunk in reader:
        missing = {"reviewerID", "asin", "unixReviewTime"} - set(chunk.columns)
        if missing:
            raise RawFormatError(f"{path}: missing key(s) {', '.join(sorted(missing))}")
        chunks.append(pd.DataFrame({
            "user_id": chunk["reviewerID"].astype(str), "item_id": chunk["asin"].astype(str),
            "rating": pd.to_numeric(chunk.get("overall"), errors="coerce"),
            "timestamp": pd.to_numeric(chunk["unixReviewTime"], errors="coerce").astype(float),
        }))
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(
        columns=["user_id", "item_id", "rating", "timestamp"])
    report.note_read(f"reviews from {os.path.basename(path)}", len(frame))
    return frame


def source_for(name):
    slug = name[len("amazon-"):]
    patterns = category_files(slug)

    def add_arguments(parser):
        parser.add_argument("--file", default=None,
                            help="raw file to read (default: the first of " + ", ".join(patterns) + ")")
        parser.add_argument("--column-order", choices=["auto", "user-item", "item-user"], default="auto",
                            help="column order of a ratings CSV (auto: 2014 'ratings_' files are "
                                 "user,item; 2018 files are item,user)")
        add_rating_argument(parser, None)
        add_core_arguments(parser, user_core=5, item_core=5, iterative=True)

    def convert(input_dir, out_prefix, args, report):
        path = os.path.join(input_dir, args.file) if args.file else find_file(
            input_dir, patterns, f"amazon {slug} reviews or ratings")
        if ".json" in os.path.basename(path):
            frame = _read_reviews_json(path, report)
        else:
            frame = _read_ratings_csv(path, args.column_order, report)
        finish_rating_sequences(frame, args, report, out_prefix)

    names = CATEGORIES.get(slug) or [patterns[-1][:-len(".csv")]]
    name_2018 = names[1] if len(names) > 1 else names[0]
    needs = (f"one of reviews_{names[0]}_5.json.gz or ratings_{names[0]}.csv (2014), "
             f"{name_2018}_5.json.gz or {name_2018}.csv (2018)")
    return Source(
        name, f"Amazon {slug} reviews/ratings as user sequences (DGSR, MA-GNN).", needs, RELEASE,
        lambda input_dir: bool(find_files(input_dir, patterns)), add_arguments, convert,
    )


SOURCES = [source_for(f"amazon-{slug}") for slug in PAPER_SOURCES]
