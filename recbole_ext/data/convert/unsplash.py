"""Unsplash Dataset Lite conversions with their search keywords as queries (Query-SeqRec).

Reads every ``conversions.tsv*`` / ``conversions.csv*`` shard (the release changed the extension;
the content is tab separated with a header row in every shard, double-quote quoting as the
official psql loader reads it) and concatenates them.

Each conversion (a user searched ``keyword`` and downloaded ``photo_id``) gives an item event at
``converted_at`` in ``unsplash.inter`` and, when the keyword is not empty, a query event in
``unsplash.query`` placed ``--query-lead`` seconds (default 0.001) before the download, so the
query that led to a download is input when that download is the target (the query-aware dataset
only takes queries strictly before the target's time). Query words: the keyword lower-cased,
trimmed, split on white space, at most ``--max-query-words`` (5, as Query-SeqRec). A user's
consecutive identical queries collapse into the first one (one search, several downloads) unless
``--repeated-queries keep``.

Settings: Query-SeqRec does not publish its filters (240,993 sequences, 22,517 items after them);
the default keeps users with at least 2 downloads **[ours]** and every photo.
"""


import pandas as pd

from recbole_ext.data.convert.common import (
    MissingRawFileError, Source, add_core_arguments, date_to_seconds, drop_duplicates, drop_rows,
    find_files, k_core, require_columns, sort_events, write_atomic,
)

PATTERNS = ("conversions.tsv*", "conversions.csv*")
COLUMNS = ["converted_at", "keyword", "photo_id", "anonymous_user_id"]


def query_words(keywords, max_words):
    words = keywords.fillna("").astype(str).str.lower().str.split()
    return words.str[:max_words].str.join(" ")


def convert(input_dir, out_prefix, args, report):
    paths = find_files(input_dir, PATTERNS)
    if not paths:
        raise MissingRawFileError(f"unsplash: none of {', '.join(PATTERNS)} is in {input_dir}")
    shards = []
    for path in paths:
        shard = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        require_columns(shard, COLUMNS, path)
        shards.append(shard[COLUMNS])
    raw = pd.concat(shards, ignore_index=True)
    report.note_read(f"conversions from {len(paths)} shard(s)", len(raw))
    frame = pd.DataFrame({
        "user_id": raw["anonymous_user_id"].str.strip(), "item_id": raw["photo_id"].str.strip(),
        "timestamp": date_to_seconds(raw["converted_at"].str.strip(), "ISO8601"),
        "query": query_words(raw["keyword"], args.max_query_words),
    })
    frame = drop_rows(frame, frame["user_id"].eq("") | frame["item_id"].eq(""),
                      "conversions without a user or photo id", report)
    frame = drop_rows(frame, frame["timestamp"].isna(), "conversions with an unparsable converted_at", report)
    frame = drop_duplicates(frame, ["user_id", "item_id", "timestamp"], report, "duplicate conversions")
    frame = k_core(frame, "user_id", "item_id", args.user_core, args.item_core, report,
                   iterative=args.iterative_core)
    frame = sort_events(frame, ["user_id", "timestamp"])
    write_atomic(frame, out_prefix + ".inter",
                 [("user_id", "token"), ("item_id", "token"), ("timestamp", "float")], report)

    queries = frame.loc[frame["query"].ne(""), ["user_id", "timestamp", "query"]].copy()
    report.note_drop("conversions without a keyword (no query event)", int(frame["query"].eq("").sum()))
    if args.repeated_queries == "collapse":
        repeat = queries["user_id"].eq(queries["user_id"].shift()) & queries["query"].eq(queries["query"].shift())
        queries = drop_rows(queries, repeat.to_numpy(), "query events repeating the user's previous query", report)
    queries["timestamp"] = (queries["timestamp"] - args.query_lead).round(6)
    write_atomic(queries, out_prefix + ".query",
                 [("user_id", "token"), ("timestamp", "float"), ("query", "token_seq")], report)
    report.summary(frame, "user_id", "item_id")
    report.note(f"{len(queries):,} query events")


def add_arguments(parser):
    parser.add_argument("--max-query-words", type=int, default=5, help="words kept per query (default 5)")
    parser.add_argument("--query-lead", type=float, default=0.001,
                        help="seconds a query event is placed before its download (default 0.001)")
    parser.add_argument("--repeated-queries", choices=["collapse", "keep"], default="collapse",
                        help="collapse a user's consecutive identical queries (default) or keep them")
    add_core_arguments(parser, user_core=2, item_core=1, iterative=True)


SOURCES = [Source(
    "unsplash", "Unsplash Lite downloads with their search keywords as queries (Query-SeqRec).",
    "conversions.tsv000 or conversions.csv000 (all shards)",
    "https://unsplash.com/data (Lite dataset, github.com/unsplash/datasets)",
    lambda input_dir: bool(find_files(input_dir, PATTERNS)), add_arguments, convert,
)]
