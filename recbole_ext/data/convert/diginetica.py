"""DIGINETICA (CIKM Cup 2016 track 2) sessions with their search queries (Query-SeqRec).

Files (``;``-separated, header rows; camelCase or snake_case headers both read):
``train-item-views.csv`` and ``train-queries.csv`` (required), ``train-clicks.csv`` (with
``--include-clicks``), ``train-purchases.csv`` (with ``--include-purchases``), ``products.csv`` and
``product-categories.csv`` (optional, give ``diginetica.item``).

Sessions are the users (``session_id``); ``userId`` is mostly ``NA`` and is not written. Time: the
``timeframe`` of every file is milliseconds on one clock per session, and ``eventdate`` is a day,
so an event's absolute time is the session's first ``eventdate`` (UTC midnight) plus
``timeframe / 1000`` seconds. Using the session's first date (not each row's) keeps a session
that crosses midnight in timeframe order; this is the true order of views, SERP clicks and
queries within a session (RecBole's own converter sorts by item id and adds milliseconds to
seconds, which we do not copy).

Item events (``diginetica.inter``): product views, plus SERP clicks (their session and date come
from the query they belong to) and purchases as options, with an ``event`` field (view, click,
purchase); exact duplicate events are dropped. Query events (``diginetica.query``): the SERPs of
``train-queries.csv`` with hashed word tokens; a category-browsing SERP (empty tokens) is
**dropped** by default because it is not a text search, or becomes the one-token query
``category_<id>`` with ``--category-queries token``. Leaderboard (``is.test``) queries are kept.

Settings: the session-based literature (SR-GNN, NARM, STAMP) drops items seen fewer than 5 times
and sessions shorter than 2 (the defaults, one pass: items, then sessions); Query-SeqRec does not
publish its filters. ``--require-query`` keeps only sessions with at least one query event.
"""

import os

import pandas as pd

from recbole_ext.data.convert.common import (
    Source, add_session_arguments, all_present, date_to_seconds, drop_duplicates,
    drop_rows, find_file, k_core, min_session_length, normalise_columns, require_columns,
    restrict_side_table, sort_events, write_atomic,
)

RELEASE = "https://competitions.codalab.org/competitions/11161 (CIKM Cup 2016 track 2, DIGINETICA)"


def _read(path, columns, report, what):
    frame = normalise_columns(pd.read_csv(path, sep=";", dtype=str, keep_default_na=False))
    require_columns(frame, columns, path)
    report.note_read(f"{what} from {os.path.basename(path)}", len(frame))
    return frame


def _tokens(values):
    """``1,2,3`` -> ``1 2 3`` (hashed word tokens as a token_seq)."""
    return values.str.replace(r"[\s,]+", " ", regex=True).str.strip()


def convert(input_dir, out_prefix, args, report):
    views = _read(find_file(input_dir, ["train-item-views.csv"], "diginetica item views"),
                  ["sessionid", "itemid", "timeframe", "eventdate"], report, "item views")
    queries = _read(find_file(input_dir, ["train-queries.csv"], "diginetica queries"),
                    ["queryid", "sessionid", "timeframe", "eventdate", "searchstringtokens", "categoryid"],
                    report, "query rows (SERPs)")
    item_events = [pd.DataFrame({"session_id": views["sessionid"], "item_id": views["itemid"],
                                 "timeframe": views["timeframe"], "eventdate": views["eventdate"],
                                 "event": "view"})]
    if args.include_clicks:
        clicks = _read(find_file(input_dir, ["train-clicks.csv"], "diginetica SERP clicks"),
                       ["queryid", "timeframe", "itemid"], report, "SERP clicks")
        owner = queries.drop_duplicates("queryid").set_index("queryid")
        known = clicks["queryid"].isin(owner.index).to_numpy()
        clicks = drop_rows(clicks, ~known, "clicks whose queryId is not in train-queries.csv", report)
        item_events.append(pd.DataFrame({
            "session_id": clicks["queryid"].map(owner["sessionid"]).to_numpy(),
            "item_id": clicks["itemid"].to_numpy(), "timeframe": clicks["timeframe"].to_numpy(),
            "eventdate": clicks["queryid"].map(owner["eventdate"]).to_numpy(), "event": "click"}))
    if args.include_purchases:
        purchases = _read(find_file(input_dir, ["train-purchases.csv"], "diginetica purchases"),
                          ["sessionid", "timeframe", "eventdate", "itemid"], report, "purchases")
        item_events.append(pd.DataFrame({"session_id": purchases["sessionid"], "item_id": purchases["itemid"],
                                         "timeframe": purchases["timeframe"],
                                         "eventdate": purchases["eventdate"], "event": "purchase"}))
    items = pd.concat(item_events, ignore_index=True)

    query_text = _tokens(queries["searchstringtokens"])
    if args.category_queries == "token":
        category = queries["categoryid"].str.strip()
        browse = query_text.eq("") & category.ne("") & category.ne("0")
        query_text = query_text.where(~browse, "category_" + category)
    query_events = pd.DataFrame({"session_id": queries["sessionid"], "timeframe": queries["timeframe"],
                                 "eventdate": queries["eventdate"], "query": query_text})

    # one absolute clock per session: its first event date plus the session-relative milliseconds
    day = pd.concat([items[["session_id", "eventdate"]], query_events[["session_id", "eventdate"]]])
    day_seconds = date_to_seconds(day["eventdate"], "%Y-%m-%d")
    session_start = day_seconds.groupby(day["session_id"].to_numpy()).min()
    for frame in (items, query_events):
        frame["timestamp"] = (frame["session_id"].map(session_start)
                              + pd.to_numeric(frame["timeframe"], errors="coerce") / 1000.0)
    items = drop_rows(items, items["timestamp"].isna() | items["item_id"].eq(""),
                      "item events without an item, a numeric timeframe or a valid eventdate", report)
    query_events = drop_rows(query_events, query_events["timestamp"].isna(),
                             "query rows without a numeric timeframe or a valid eventdate", report)
    no_text = query_events["query"].eq("").to_numpy()
    query_events = drop_rows(query_events, no_text, "category-browsing SERPs (no search tokens; "
                             "--category-queries token keeps them)", report)

    items = drop_duplicates(items, ["session_id", "item_id", "timeframe", "event"], report, "duplicate item events")
    items = sort_events(items, ["session_id", "timestamp"])
    items = k_core(items, "session_id", "item_id", 1, args.min_item_count, report, iterative=False)
    items = min_session_length(items, "session_id", "item_id", args.min_session_length, report)
    if args.require_query:
        with_query = items["session_id"].isin(query_events["session_id"]).to_numpy()
        items = drop_rows(items, ~with_query, "item events of sessions without a query", report)
    query_events = drop_rows(query_events, ~query_events["session_id"].isin(items["session_id"]).to_numpy(),
                             "query events of sessions without kept item events", report)
    query_events = sort_events(query_events, ["session_id", "timestamp"])

    write_atomic(items, out_prefix + ".inter",
                 [("session_id", "token"), ("item_id", "token"), ("timestamp", "float"), ("event", "token")],
                 report)
    write_atomic(query_events, out_prefix + ".query",
                 [("session_id", "token"), ("timestamp", "float"), ("query", "token_seq")], report)
    _write_items(input_dir, out_prefix, items["item_id"], report)
    report.summary(items, "session_id", "item_id")
    report.note(f"{len(query_events):,} query events")


def _write_items(input_dir, out_prefix, kept_items, report):
    products_path = find_file(input_dir, ["products.csv"], "diginetica products", required=False)
    categories_path = find_file(input_dir, ["product-categories.csv"], "diginetica categories", required=False)
    if not products_path and not categories_path:
        return
    table = pd.DataFrame({"item_id": pd.unique(kept_items)})
    if products_path:
        products = _read(products_path, ["itemid", "pricelog2", "productnametokens"], report, "products")
        products = products.drop_duplicates("itemid").set_index("itemid")
        table["price_log2"] = pd.to_numeric(table["item_id"].map(products["pricelog2"]), errors="coerce")
        table["name_tokens"] = _tokens(table["item_id"].map(products["productnametokens"]).fillna(""))
    if categories_path:
        categories = _read(categories_path, ["itemid", "categoryid"], report, "item categories")
        categories = categories.drop_duplicates("itemid").set_index("itemid")
        table["category"] = table["item_id"].map(categories["categoryid"]).fillna("")
    fields = [("item_id", "token")]
    fields += [("price_log2", "float"), ("name_tokens", "token_seq")] if products_path else []
    fields += [("category", "token")] if categories_path else []
    write_atomic(restrict_side_table(table, "item_id", kept_items), out_prefix + ".item", fields, report)


def add_arguments(parser):
    parser.add_argument("--include-clicks", action="store_true",
                        help="add SERP clicks (train-clicks.csv) as item events")
    parser.add_argument("--include-purchases", action="store_true",
                        help="add purchases (train-purchases.csv) as item events")
    parser.add_argument("--category-queries", choices=["drop", "token"], default="drop",
                        help="category-browsing SERPs (no tokens): drop them (default) or keep them "
                             "as the one-token query category_<id>")
    parser.add_argument("--require-query", action="store_true",
                        help="keep only sessions with at least one query event")
    add_session_arguments(parser, min_session_length=2, min_item_count=5)


SOURCES = [Source(
    "diginetica", "DIGINETICA sessions with search queries (Query-SeqRec).",
    "train-item-views.csv and train-queries.csv (train-clicks.csv, train-purchases.csv, products.csv, "
    "product-categories.csv optional)", RELEASE,
    all_present(["train-item-views.csv"], ["train-queries.csv"]), add_arguments, convert,
)]
