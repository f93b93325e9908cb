"""RetailRocket e-commerce events (``events.csv``: ``timestamp,visitorid,event,itemid,
transactionid``, times in **milliseconds**) as micro-behaviour visitor sequences.

One row per event (``op``: view, addtocart, transaction) in time order, times converted to
seconds; exact duplicate rows are dropped. ``--session-gap SECONDS`` also writes a ``session_id``
that starts anew after that much idle time (30 min in session-based work).

Settings **[ours]** (no paper of this package uses RetailRocket): items with at least 5 events and
visitors with at least 2, one pass, as in session-based work.
"""

import os

import pandas as pd

from recbole_ext.data.convert.common import (
    Source, add_core_arguments, any_present, drop_duplicates, drop_rows, find_file, k_core,
    normalise_columns, require_columns, sort_events, write_atomic,
)

OPERATIONS = ("view", "addtocart", "transaction")


def convert(input_dir, out_prefix, args, report):
    path = find_file(input_dir, ["events.csv"], "retailrocket events")
    raw = normalise_columns(pd.read_csv(path, dtype=str, keep_default_na=False))
    require_columns(raw, ["timestamp", "visitorid", "event", "itemid"], path)
    report.note_read(f"events from {os.path.basename(path)}", len(raw))
    frame = pd.DataFrame({
        "visitor_id": raw["visitorid"], "item_id": raw["itemid"], "op": raw["event"],
        "timestamp": pd.to_numeric(raw["timestamp"], errors="coerce") / 1000.0,
    })
    frame = drop_rows(frame, frame["timestamp"].isna(), "rows without a numeric timestamp", report)
    frame = drop_rows(frame, ~frame["op"].isin(OPERATIONS).to_numpy(),
                      f"rows whose event is not one of {', '.join(OPERATIONS)}", report)
    frame = drop_duplicates(frame, ["visitor_id", "item_id", "op", "timestamp"], report)
    frame = k_core(frame, "visitor_id", "item_id", args.user_core, args.item_core, report,
                   iterative=args.iterative_core, user_word="visitors")
    frame = sort_events(frame, ["visitor_id", "timestamp"])
    fields = [("visitor_id", "token"), ("item_id", "token"), ("timestamp", "float"), ("op", "token")]
    if args.session_gap:
        new_visitor = frame["visitor_id"].ne(frame["visitor_id"].shift()).to_numpy()
        idle = frame["timestamp"].diff().to_numpy() > args.session_gap
        frame["session_id"] = (new_visitor | idle).cumsum().astype(str)
        fields.append(("session_id", "token"))
    write_atomic(frame, out_prefix + ".inter", fields, report)
    report.summary(frame, "visitor_id", "item_id")


def add_arguments(parser):
    parser.add_argument("--session-gap", type=float, default=0,
                        help="also write session_id, starting a new session after this many idle seconds (0: no)")
    add_core_arguments(parser, user_core=2, item_core=5, iterative=False, user_word="visitor")


SOURCES = [Source(
    "retailrocket", "RetailRocket view/addtocart/transaction events as micro-behaviour sequences.",
    "events.csv", "https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset",
    any_present("events.csv"), add_arguments, convert,
)]
