"""Trivago RecSys Challenge 2019 ``train.csv`` as micro-behaviour sessions (EMBSR).

Only the six actions whose ``reference`` is an item id are kept, as operations (``op``):
clickout, rating, info, image, deals, search (EMBSR's ids 1..6); the four others (sort order,
filter, destination and POI searches) are dropped and counted. Events are ordered by
(session, ``step``); since timestamps have one-second resolution, the written timestamp is made
non-decreasing in step order (running maximum within the session) so that RecBole's stable time
sort keeps the step order.

Paper settings (EMBSR): items with at least 5 occurrences, then sessions of at least 2 macro
items (one pass, the defaults).
"""

import os

import pandas as pd

from recbole_ext.data.convert.common import (
    Source, add_session_arguments, any_present, drop_rows, find_file, k_core, min_session_length,
    require_columns, sort_events, write_atomic,
)

ITEM_ACTIONS = {
    "clickout item": "clickout",
    "interaction item rating": "rating",
    "interaction item info": "info",
    "interaction item image": "image",
    "interaction item deals": "deals",
    "search for item": "search",
}
COLUMNS = ["user_id", "session_id", "timestamp", "step", "action_type", "reference"]


def convert(input_dir, out_prefix, args, report):
    path = find_file(input_dir, ["train.csv"], "trivago train.csv")
    header = pd.read_csv(path, nrows=0)
    require_columns(header, COLUMNS, path)
    raw = pd.read_csv(path, usecols=COLUMNS, dtype=str, keep_default_na=False)  # city is quoted
    report.note_read(f"actions from {os.path.basename(path)}", len(raw))
    raw = drop_rows(raw, ~raw["action_type"].isin(ITEM_ACTIONS).to_numpy(),
                    "actions whose reference is not an item (sort order, filter, destination/POI search)",
                    report)
    frame = pd.DataFrame({
        "session_id": raw["session_id"], "user_id": raw["user_id"], "item_id": raw["reference"],
        "timestamp": pd.to_numeric(raw["timestamp"], errors="coerce").astype(float),
        "step": pd.to_numeric(raw["step"], errors="coerce"),
        "op": raw["action_type"].map(ITEM_ACTIONS),
    })
    frame = drop_rows(frame, ~frame["item_id"].str.fullmatch(r"\d+").to_numpy(),
                      "item actions whose reference is not a numeric item id", report)
    frame = drop_rows(frame, frame["timestamp"].isna() | frame["step"].isna(),
                      "rows without a numeric timestamp or step", report)
    frame = sort_events(frame, ["session_id", "step"])
    running_max = frame.groupby("session_id")["timestamp"].cummax()
    report.note(f"{int((running_max != frame['timestamp']).sum()):,} timestamp(s) raised to keep step order")
    frame["timestamp"] = running_max
    frame = k_core(frame, "session_id", "item_id", 1, args.min_item_count, report, iterative=False)
    frame = min_session_length(frame, "session_id", "item_id", args.min_session_length, report, macro=True)
    write_atomic(frame, out_prefix + ".inter",
                 [("session_id", "token"), ("user_id", "token"), ("item_id", "token"),
                  ("timestamp", "float"), ("op", "token")], report)
    report.summary(frame, "session_id", "item_id")


def add_arguments(parser):
    add_session_arguments(parser, min_session_length=2, min_item_count=5)


SOURCES = [Source(
    "trivago", "Trivago RecSys Challenge 2019 item actions as micro-behaviour sessions (EMBSR).",
    "train.csv", "https://recsys.trivago.cloud/challenge/dataset/ (RecSys Challenge 2019, login required)",
    any_present("train.csv"), add_arguments, convert,
)]
