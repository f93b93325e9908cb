"""Tianchi Taobao UserBehavior (``UserBehavior.csv``: no header,
``user_id,item_id,category_id,behavior_type,timestamp``) as micro-behaviour user sequences.

One row per behaviour (``op``: pv, cart, fav, buy), in time order; the base dataset merges
consecutive behaviours on one item into a macro item (``OPERATION_FIELD: op``). Rows outside the
documented window 2017-11-25 00:00 to 2017-12-03 23:59:59 (UTC+8) are dropped unless
``--no-time-window``; exact duplicates are dropped.

Paper settings: HUGT uses a user sample (40,023 users, 205,495 items, avg. length 98) without
published filters; ``--sample-users N`` draws N users with ``--seed`` **[ours]**. Default k-core:
users and items with at least 5 rows **[ours]**.
"""

import os

import numpy as np
import pandas as pd

from recbole_ext.data.convert.common import (
    RawFormatError, Source, add_core_arguments, any_present, drop_duplicates, drop_rows, find_file,
    k_core, restrict_side_table, sort_events, write_atomic,
)

OPERATIONS = ("pv", "cart", "fav", "buy")
WINDOW = (1511539200.0, 1512316799.0)  # 2017-11-25 00:00:00 .. 2017-12-03 23:59:59 UTC+8


def convert(input_dir, out_prefix, args, report):
    path = find_file(input_dir, ["UserBehavior.csv"], "taobao behaviours")
    frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    if frame.shape[1] != 5:
        raise RawFormatError(f"{path}: expected 5 columns "
                             f"(user_id,item_id,category_id,behavior_type,timestamp), found {frame.shape[1]}")
    frame.columns = ["user_id", "item_id", "category", "op", "timestamp"]
    report.note_read(f"behaviours from {os.path.basename(path)}", len(frame))
    frame["timestamp"] = pd.to_numeric(frame["timestamp"], errors="coerce").astype(float)
    frame = drop_rows(frame, frame["timestamp"].isna(), "rows without a numeric timestamp", report)
    frame = drop_rows(frame, ~frame["op"].isin(OPERATIONS).to_numpy(),
                      f"rows whose behaviour is not one of {', '.join(OPERATIONS)}", report)
    if args.time_window:
        outside = (frame["timestamp"] < WINDOW[0]) | (frame["timestamp"] > WINDOW[1])
        frame = drop_rows(frame, outside, "rows outside 2017-11-25..2017-12-03 (UTC+8)", report)
    frame = drop_duplicates(frame, ["user_id", "item_id", "op", "timestamp"], report)
    if args.sample_users:
        users = pd.unique(frame["user_id"])
        if args.sample_users < len(users):
            chosen = np.random.default_rng(args.seed).choice(users, args.sample_users, replace=False)
            frame = drop_rows(frame, ~frame["user_id"].isin(chosen).to_numpy(),
                              f"rows of users outside a sample of {args.sample_users} (seed {args.seed})", report)
    frame = k_core(frame, "user_id", "item_id", args.user_core, args.item_core, report,
                   iterative=args.iterative_core)
    frame = sort_events(frame, ["user_id", "timestamp"])
    write_atomic(frame, out_prefix + ".inter",
                 [("user_id", "token"), ("item_id", "token"), ("timestamp", "float"), ("op", "token")], report)
    items = restrict_side_table(frame[["item_id", "category"]], "item_id", frame["item_id"])
    write_atomic(items, out_prefix + ".item", [("item_id", "token"), ("category", "token")], report)
    report.summary(frame, "user_id", "item_id")


def add_arguments(parser):
    parser.add_argument("--no-time-window", dest="time_window", action="store_false",
                        help="keep rows outside the documented 2017-11-25..2017-12-03 window")
    parser.add_argument("--sample-users", type=int, default=0,
                        help="keep a random sample of this many users (0: all; HUGT used ~40k)")
    parser.add_argument("--seed", type=int, default=2020, help="seed of --sample-users")
    add_core_arguments(parser, user_core=5, item_core=5, iterative=True)


SOURCES = [Source(
    "taobao", "Taobao UserBehavior pv/cart/fav/buy as micro-behaviour user sequences (HUGT).",
    "UserBehavior.csv", "https://tianchi.aliyun.com/dataset/649",
    any_present("UserBehavior.csv"), add_arguments, convert,
)]
