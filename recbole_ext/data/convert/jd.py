"""JD micro-behaviour sessions (Gu et al. WSDM'20 HUP; used by EMBSR): ``JD_Applicances`` (sic)
and ``JD_Computers``, one session per line, events separated by spaces, each event
``sku+behavior+category+time_interval+dwell_time``.

There are no user ids, session ids or absolute times: the session id is the line number and the
timestamp is the running sum of the preceding ``time_interval`` gaps. With ``--session-clock
file-order`` (default) the sessions are laid back to back in file order, 1 s apart, so a split of
sessions by time (EMBSR's 70/10/20) follows the file order **[ours]**; ``relative`` starts every
session at 0 s. Operations (``op``) are the ten behaviour codes by name. A session with a
malformed event (not five ``+`` parts, non-numeric fields, an unknown code, or a missing dwell
time) is dropped whole, as HUP drops sessions with missing dwell times.

Paper settings (EMBSR, following HUP): items with at least 50 occurrences, then sessions of at
least 2 macro items (one pass, the defaults).
"""

import os

import pandas as pd

from recbole_ext.data.convert.common import (
    Source, add_session_arguments, any_present, drop_rows, find_file, k_core, min_session_length,
    write_atomic,
)

OPERATIONS = {
    "1": "Home2Product", "2": "ShopList2Product", "3": "Sale2Product", "4": "Cart2Product",
    "5": "SearchList2Product", "6": "Detail_comments", "7": "Detail_specification",
    "8": "Detail_bottom", "9": "Cart", "10": "Order",
}
FILES = {"jd-appliances": ["JD_Applicances", "JD_Appliances"], "jd-computers": ["JD_Computers"]}


def _events(path):
    lines = pd.read_csv(path, header=None, names=["line"], sep="\t", dtype=str,
                        keep_default_na=False, skip_blank_lines=False, quoting=3)["line"]
    sessions = lines.str.strip().str.split(" ")
    lengths = sessions.str.len().to_numpy()
    events = sessions.explode()
    parts = events.str.split("+", expand=True).reindex(columns=range(6))
    frame = pd.DataFrame({
        "session_id": (events.index.to_numpy() + 1).astype(str),
        "item_id": parts[0].to_numpy(), "code": parts[1].to_numpy(), "category": parts[2].to_numpy(),
        "time_interval": pd.to_numeric(parts[3], errors="coerce").to_numpy(),
        "dwell_time": pd.to_numeric(parts[4], errors="coerce").to_numpy(),
    })
    malformed = (parts[5].notna() | parts[4].isna() | ~parts[0].str.fullmatch(r"\d+").fillna(False)
                 | ~parts[1].isin(OPERATIONS) | frame["time_interval"].isna().to_numpy()
                 | frame["dwell_time"].isna().to_numpy())
    return frame, malformed.to_numpy(), len(lines), int(lengths.sum())


def _make_source(name):
    def convert(input_dir, out_prefix, args, report):
        path = find_file(input_dir, FILES[name], f"{name} sessions")
        frame, malformed, n_lines, n_events = _events(path)
        report.note_read(f"micro-behaviours in {n_lines:,} sessions from {os.path.basename(path)}", n_events)
        bad_session = pd.Series(malformed).groupby(frame["session_id"].to_numpy()).transform("any")
        frame = drop_rows(frame, bad_session.to_numpy() | frame["item_id"].eq("").to_numpy(),
                          "micro-behaviours of sessions with a malformed event or a missing dwell time", report)
        frame["op"] = frame["code"].map(OPERATIONS)
        # the time of an event is the sum of the gaps before it: cumsum minus its own gap
        frame["timestamp"] = frame.groupby("session_id")["time_interval"].cumsum() - frame["time_interval"]
        frame = k_core(frame, "session_id", "item_id", 1, args.min_item_count, report, iterative=False)
        frame = min_session_length(frame, "session_id", "item_id", args.min_session_length, report, macro=True)
        if args.session_clock == "file-order":
            # sessions laid back to back in file order, 1 s apart: a split by session time then
            # follows the file order (the only order the release gives), gaps within a session kept
            durations = frame.groupby("session_id", sort=False)["timestamp"].max()
            starts = (durations + 1.0).cumsum().shift(fill_value=0.0)
            frame["timestamp"] = frame["timestamp"] + frame["session_id"].map(starts).to_numpy()
        write_atomic(frame, out_prefix + ".inter",
                     [("session_id", "token"), ("item_id", "token"), ("timestamp", "float"), ("op", "token"),
                      ("category", "token"), ("dwell_time", "float")], report)
        report.summary(frame, "session_id", "item_id")

    def add_arguments(parser):
        parser.add_argument("--session-clock", choices=["file-order", "relative"], default="file-order",
                            help="file-order (default): sessions follow each other in file order, 1 s "
                                 "apart; relative: every session starts at 0 s")
        add_session_arguments(parser, min_session_length=2, min_item_count=50)

    return Source(
        name, f"JD {name.split('-')[1]} micro-behaviour sessions (EMBSR, HUP).", " or ".join(FILES[name]),
        "https://github.com/guyulongcs/WSDM2020_HUP (README links the full files)",
        any_present(*FILES[name]), add_arguments, convert,
    )


SOURCES = [_make_source("jd-appliances"), _make_source("jd-computers")]
