"""Converters: every source's hand-written raw fixture (tests/fixtures/raw/<source>/, in the exact
raw format with the quirks of shared/DATASETS.md) converts to atomic files that RecBole loads with
the expected sequences in time order; raw files stay byte-identical; failures leave nothing."""

import gzip
import hashlib
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from recbole.config import Config
from recbole.data import create_dataset

from recbole_ext.data import convert as convert_pkg
from recbole_ext.data.convert import common, convert
from recbole_ext.data.convert.__main__ import main as cli_main
from recbole_ext.data.convert.auto import DatasetNotFoundError, ensure_dataset
from recbole_ext.data.validate import validate_atomic_dataset

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = os.path.join(HERE, "fixtures", "raw")
DATASET_YAML = os.path.join(os.path.dirname(HERE), "properties", "dataset")
NO_FILTER = ["--user-core", "1", "--item-core", "1"]
NO_SESSION_FILTER = ["--min-item-count", "1"]

D0509, D0510, D0511 = 1462752000.0, 1462838400.0, 1462924800.0  # 2016-05-09/10/11 UTC


def tree_digest(folder):
    digest = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                digest[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def load_recbole(data_root, name, yaml_name=None):
    """Load a converted dataset with stock RecBole, configured by our properties/dataset yaml."""
    config = Config(
        model="SASRec", dataset=name,
        config_file_list=[os.path.join(DATASET_YAML, f"{yaml_name or name}.yaml")],
        config_dict={"data_path": str(data_root), "state": "ERROR", "show_progress": False,
                     "use_gpu": False, "MAX_ITEM_LIST_LENGTH": 10, "train_neg_sample_args": None},
    )
    return create_dataset(config)


def sequences(dataset, extra=None):
    """``{user: [item, ...]}`` (or ``[(item, extra), ...]``) in RecBole's time order: the loaded
    frame sorted stably by (user, time), exactly as RecBole's stable argsorts will."""
    uid, iid, time = dataset.uid_field, dataset.iid_field, dataset.time_field
    frame = dataset.inter_feat.sort_values([uid, time], kind="stable")
    columns = [dataset.id2token(uid, frame[uid].to_numpy()), dataset.id2token(iid, frame[iid].to_numpy())]
    if extra:
        columns.append(dataset.id2token(extra, frame[extra].to_numpy()))
    result = {}
    for row in zip(*columns):
        result.setdefault(str(row[0]), []).append(tuple(map(str, row[1:])) if extra else str(row[1]))
    return result


def run(source, fixture, tmp_path, argv=(), name=None):
    name = name or source
    before = tree_digest(os.path.join(RAW, fixture))
    convert(source, os.path.join(RAW, fixture), str(tmp_path / name), argv=list(argv), out=lambda *_: None)
    assert tree_digest(os.path.join(RAW, fixture)) == before, "raw files changed"
    validate_atomic_dataset(str(tmp_path / name), name)
    return tmp_path / name


def read_atomic(path):
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


CASES = [
    # source, fixture, argv, yaml, operation field or None, expected sequences
    ("diginetica", "diginetica", NO_SESSION_FILTER, None, None,
     {"1": ["100", "100", "200"], "2": ["300", "100"], "4": ["100", "200"]}),
    ("unsplash", "unsplash", [], None, None,
     {"u1": ["XyZ00000002", "AbCdEfGh123", "XyZ00000001"], "u2": ["AbCdEfGh123", "XyZ00000001"]}),
    ("jd-appliances", "jd-appliances", NO_SESSION_FILTER, None, "op",
     {"1": [("1993092", "Detail_specification"), ("1993092", "Detail_comments"), ("555", "Home2Product"),
            ("1993092", "Cart")],
      "2": [("777", "Home2Product"), ("888", "SearchList2Product")]}),
    ("jd-computers", "jd-computers", NO_SESSION_FILTER, None, "op",
     {"1": [("42", "SearchList2Product"), ("43", "Order")]}),
    ("trivago", "trivago", NO_SESSION_FILTER, None, "op",
     {"s1": [("6617798", "image"), ("6617798", "info"), ("1263420", "clickout"), ("1263420", "rating")],
      "s2": [("555", "search"), ("666", "deals")]}),
    ("taobao", "taobao", NO_FILTER, None, "op",
     {"1": [("2268318", "pv"), ("2268318", "cart"), ("2333346", "pv")],
      "2": [("2333346", "fav"), ("2268318", "buy")], "3": [("2333346", "pv")]}),
    ("retailrocket", "retailrocket", NO_FILTER, None, "op",
     {"257597": [("355908", "view"), ("355908", "addtocart"), ("1000", "transaction")],
      "992329": [("248676", "view"), ("355908", "view")]}),
    ("amazon-beauty", "amazon-beauty", NO_FILTER, None, None,  # 2014 user,item; same-day tie keeps file order
     {"A39HTATAQ9V7YF": ["0558925278", "0205616461", "B00006L9LC"],
      "A3JM6GV9MNOF9X": ["0558925278", "0205616461"]}),
    ("amazon-video-games", "amazon-video-games", NO_FILTER, None, None,  # 2018: item,user reversed
     {"A1HP7NVNPFMA4N": ["0700026657", "B00000DMB3"], "AZ0Y5DXCH4ZX9": ["0700026657", "B00000DMB3"]}),
    ("amazon-video-games", "amazon-video-games-5core", NO_FILTER, None, None,  # 2018 5-core JSON lines
     {"A1HP7NVNPFMA4N": ["B00000DMB3", "0700026657"], "A1JGAP0185YJI6": ["0700026657"]}),
    ("amazon-cds", "amazon-cds", NO_FILTER, None, None,  # 2014 5-core JSON lines
     {"A14VAT5EAX3D9S": ["1384719342", "B00004Y2UT"], "A2IBPI20UZIR0U": ["B00004Y2UT", "1384719342"]}),
    ("ml-1m", "ml-1m", NO_FILTER, None, None, {"1": ["1193", "914", "661"], "2": ["1193", "661"]}),
    ("ml-20m", "ml-20m", NO_FILTER, None, None, {"1": ["32"], "2": ["29", "2"]}),  # default rating >= 4
    ("netflix", "netflix", NO_FILTER, None, None,
     {"1488844": ["2", "1"], "822109": ["1", "2"], "885013": ["2"]}),
    ("steam", "steam", NO_FILTER, None, None,  # dict literals, u"" strings, a broken line
     {"Chaos Syren": ["328100", "725280"], "Dr. O'Neil": ["328100", "725280"]}),
    ("goodreads-children", "goodreads-children", NO_FILTER, None, None,  # rating >= 4, dated rows only
     {"72fb0d0087d28c832f15776b0d936598": ["6066819"],
      "8842281e1d1347389f2ab93d60773d4d": ["6066819", "17290220"]}),
]


@pytest.mark.parametrize("source,fixture,argv,yaml_name,op_field,expected", CASES, ids=[c[1] for c in CASES])
def test_fixture_converts_and_recbole_loads_expected_sequences(tmp_path, source, fixture, argv, yaml_name,
                                                               op_field, expected):
    run(source, fixture, tmp_path, argv)
    dataset = load_recbole(tmp_path, source, yaml_name)
    assert sequences(dataset, extra=op_field) == expected


def test_every_known_source_has_a_documented_dataset_yaml():
    for name in convert_pkg.known_sources():
        path = os.path.join(DATASET_YAML, f"{name}.yaml")
        with open(path) as handle:
            text = handle.read()
        config = yaml.safe_load(text)
        for key in ("USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD", "load_col"):
            assert key in config, (name, key)
        assert f"python -m recbole_ext.data.convert {name}" in text
        for line in text.splitlines():  # every key is commented
            if line and not line.startswith((" ", "#")):
                assert "# (" in line, (name, line)
        micro = name in ("jd-appliances", "jd-computers", "trivago", "taobao", "retailrocket")
        assert (config.get("OPERATION_FIELD") == "op") == micro, name
        assert set(config["load_col"]["inter"]) >= {config["USER_ID_FIELD"], config["ITEM_ID_FIELD"],
                                                     config["TIME_FIELD"]}


# ------------------------------------------------------------------------------- DIGINETICA


def _events(folder, name):
    """Item and query events of a converted query dataset merged in time order (a query at the
    same time as an item goes first, as the query-aware dataset places it)."""
    items = read_atomic(folder / f"{name}.inter")
    queries = read_atomic(folder / f"{name}.query")
    user = items.columns[0]
    items = pd.DataFrame({"user": items[user], "t": items["timestamp"].astype(float), "kind": 1,
                          "what": items["item_id"]})
    queries = pd.DataFrame({"user": queries[user], "t": queries["timestamp"].astype(float), "kind": 0,
                            "what": "q:" + queries["query"]})
    merged = pd.concat([queries, items]).sort_values(["user", "t", "kind"], kind="stable")
    return {u: list(zip(g["t"], g["what"])) for u, g in merged.groupby("user")}


def test_diginetica_queries_interleave_with_clicks_in_true_time_order(tmp_path):
    folder = run("diginetica", "diginetica", tmp_path, NO_SESSION_FILTER + ["--include-clicks"])
    events = _events(folder, "diginetica")
    # session 1: query 1 at 0 s, SERP click on 300 at 3 s, views of 100 at 5 s and 9 s, query 3 at
    # 15 s (issued after the click on 100 at 9 s, so it must come after it), view of 200 at 20 s;
    # query 2 (category browsing, no tokens) is dropped by default.
    assert events["1"] == [(D0509 + 0, "q:16655 234"), (D0509 + 3, "300"), (D0509 + 5, "100"),
                           (D0509 + 9, "100"), (D0509 + 15, "q:7788"), (D0509 + 20, "200")]
    # session 2: view 300 at 1 s, query 4 at 2 s, its (duplicated) click at 2.5 s, view 100 at 4 s
    assert events["2"] == [(D0510 + 1, "300"), (D0510 + 2, "q:555 666 777"), (D0510 + 2.5, "300"),
                           (D0510 + 4, "100")]
    # session 4 crosses midnight: one clock from its first date, not each row's date
    assert events["4"] == [(D0511 + 86390, "100"), (D0511 + 86410, "200")]
    assert "3" not in events  # a one-view session is dropped with its query
    inter = read_atomic(folder / "diginetica.inter")
    assert list(inter["event"]) == ["click", "view", "view", "view", "view", "click", "view", "view", "view"]


def test_diginetica_item_features_and_category_browsing_option(tmp_path):
    folder = run("diginetica", "diginetica", tmp_path, NO_SESSION_FILTER + ["--category-queries", "token"])
    queries = read_atomic(folder / "diginetica.query")
    assert list(queries["query"]) == ["16655 234", "category_1096", "7788", "555 666 777"]
    items = read_atomic(folder / "diginetica.item").set_index("item_id")
    assert sorted(items.index) == ["100", "200", "300"]  # item 999 never interacted: not written
    assert items.loc["100", "name_tokens"] == "4 5 6" and items.loc["200", "price_log2"] == ""
    assert items.loc["300", "category"] == "1"


def test_diginetica_default_filters_and_require_query(tmp_path):
    folder = run("diginetica", "diginetica", tmp_path, ["--min-item-count", "4"])
    # 100 is viewed 4 times, 200 3 times, 300 once
    assert set(read_atomic(folder / "diginetica.inter")["item_id"]) == {"100"}
    # min session length 2 then leaves only session 1 (100 twice)
    assert list(read_atomic(folder / "diginetica.inter")["session_id"]) == ["1", "1"]
    folder = run("diginetica", "diginetica", tmp_path, NO_SESSION_FILTER + ["--require-query"], name="dq")
    assert set(read_atomic(folder / "dq.inter")["session_id"]) == {"1", "2"}


# ------------------------------------------------------------------------------- other quirks


def test_unsplash_query_precedes_its_download_and_csv000_shards(tmp_path):
    folder = run("unsplash", "unsplash", tmp_path)
    events = _events(folder, "unsplash")
    assert [what for _, what in events["u1"]] == [
        "q:forest", "XyZ00000002", "q:mountain lake", "AbCdEfGh123", "XyZ00000001"]  # repeat collapsed
    assert [what for _, what in events["u2"]] == ["AbCdEfGh123", "q:one two three four five", "XyZ00000001"]
    assert events["u2"][1][0] == pytest.approx(events["u2"][2][0] - 0.001)
    folder = run("unsplash", "unsplash-csv", tmp_path, name="unsplash-csv")
    assert [what for _, what in _events(folder, "unsplash-csv")["v1"]] == [
        "q:cat", "Photo000001", "q:dog", "Photo000002"]


def test_amazon_wrong_column_order_is_refused(tmp_path):
    with pytest.raises(common.RawFormatError, match="--column-order item-user"):
        convert("amazon-video-games", os.path.join(RAW, "amazon-video-games"), str(tmp_path / "x"),
                argv=NO_FILTER + ["--column-order", "user-item"], out=lambda *_: None)
    assert not os.path.exists(tmp_path / "x")


def test_amazon_any_category_and_goodreads_csv_refused(tmp_path):
    source = convert_pkg.get_source("amazon-musical-instruments")
    assert "ratings_Musical_Instruments.csv" in source.needs
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "goodreads_interactions.csv").write_text("user_id,book_id,is_read,rating,is_reviewed\n0,948,1,5,0\n")
    with pytest.raises(common.RawFormatError, match="no timestamps"):
        convert("goodreads", str(raw), str(tmp_path / "goodreads"), out=lambda *_: None)


def test_netflix_official_files_equal_kaggle_files_and_steam_gzip(tmp_path):
    kaggle = run("netflix", "netflix", tmp_path, NO_FILTER)
    official = run("netflix", "netflix-official", tmp_path, NO_FILTER, name="nf")
    assert (kaggle / "netflix.inter").read_text() == (official / "nf.inter").read_text()
    raw = tmp_path / "steam-gz"
    raw.mkdir()
    with open(os.path.join(RAW, "steam", "steam_reviews.json"), "rb") as src, \
            gzip.open(raw / "steam_reviews.json.gz", "wb") as dst:
        dst.write(src.read())
    convert("steam", str(raw), str(tmp_path / "steamgz"), argv=NO_FILTER, out=lambda *_: None)
    plain = run("steam", "steam", tmp_path, NO_FILTER)
    assert (tmp_path / "steamgz" / "steamgz.inter").read_text() == (plain / "steam.inter").read_text()


def test_ml1m_side_files_latin1_and_restricted_to_kept_ids(tmp_path):
    folder = run("ml-1m", "ml-1m", tmp_path, NO_FILTER)
    movies = read_atomic(folder / "ml-1m.item")
    assert sorted(movies["item_id"]) == ["1193", "661", "914"]  # movie 3 (Latin-1 title) has no rating
    assert movies.set_index("item_id").loc["661", "genre"] == "Animation Children's Musical"
    assert sorted(read_atomic(folder / "ml-1m.user")["user_id"]) == ["1", "2"]


# ------------------------------------------------------------------------------- filters


def _frame(pairs):
    return pd.DataFrame(pairs, columns=["u", "i"])


def test_k_core_iterative_and_single_pass_hand_computed():
    report = common.Report("t", out=lambda *_: None)
    # item c has 1 row -> dropped; then user 3 has 1 row left -> dropped; then item b has 1 row
    frame = _frame([(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "b"), (3, "c"), (4, "a"), (4, "a")])
    single = common.k_core(frame, "u", "i", 2, 2, report, iterative=False)
    assert list(single.itertuples(index=False, name=None)) == [
        (1, "a"), (1, "b"), (2, "a"), (2, "b"), (4, "a"), (4, "a")]
    frame2 = _frame([(1, "a"), (1, "b"), (2, "a"), (2, "c"), (3, "a"), (3, "a")])
    # pass 1: items b, c (1 row each) go; users 1 and 2 are left with 1 row and go; then item a
    # has only user 3's 2 rows: stable.
    iterative = common.k_core(frame2, "u", "i", 2, 2, report, iterative=True)
    assert list(iterative.itertuples(index=False, name=None)) == [(3, "a"), (3, "a")]
    # one pass drops item c, then user 2; that leaves item a with one row, which only the
    # iterative filter goes on to drop (and then user 1)
    frame3 = _frame([(1, "a"), (1, "b"), (2, "a"), (2, "c"), (3, "b"), (3, "b")])
    assert list(common.k_core(frame3, "u", "i", 2, 2, report, iterative=False)["u"]) == [1, 1, 3, 3]
    assert list(common.k_core(frame3, "u", "i", 2, 2, report, iterative=True)["u"]) == [3, 3]


def test_min_session_length_counts_macro_items():
    report = common.Report("t", out=lambda *_: None)
    frame = _frame([(1, "a"), (1, "a"), (1, "a"), (2, "a"), (2, "b"), (2, "a"), (3, "x")])
    kept = common.min_session_length(frame, "u", "i", 2, report, macro=True)
    assert list(kept["u"]) == [2, 2, 2]  # session 1 is one macro item, however many rows
    kept = common.min_session_length(frame, "u", "i", 2, report, macro=False)
    assert list(kept["u"]) == [1, 1, 1, 2, 2, 2]


# ------------------------------------------------------------------------------- atomicity, CLI, auto


def test_interrupted_conversion_leaves_no_half_written_dataset(tmp_path, monkeypatch):
    from recbole_ext.data.convert import diginetica

    out = tmp_path / "diginetica"
    out.mkdir()
    (out / "diginetica.inter").write_text("old\n")
    real_write = diginetica.write_atomic
    calls = []

    def failing_write(frame, path, fields, report=None):
        calls.append(path)
        if len(calls) == 2:  # after .inter is written, while writing .query
            with open(path, "w") as handle:
                handle.write("session_id:token\thalf")
            raise RuntimeError("disk full")
        return real_write(frame, path, fields, report)

    monkeypatch.setattr(diginetica, "write_atomic", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        convert("diginetica", os.path.join(RAW, "diginetica"), str(out), argv=NO_SESSION_FILTER,
                out=lambda *_: None)
    assert os.listdir(tmp_path) == ["diginetica"]  # no temporary folder left behind
    assert os.listdir(out) == ["diginetica.inter"] and (out / "diginetica.inter").read_text() == "old\n"


def test_cli_converts_and_reports_counts(tmp_path, capsys):
    out = tmp_path / "taobao"
    assert cli_main(["taobao", "--input", os.path.join(RAW, "taobao"), "--output", str(out)] + NO_FILTER) == 0
    printed = capsys.readouterr().out
    assert "read 8 behaviours" in printed and "dropped 1 duplicate rows" in printed
    assert "dropped 1 rows outside 2017-11-25..2017-12-03" in printed and "kept 6 interactions" in printed
    assert (out / "taobao.inter").exists() and (out / "taobao.item").exists()
    assert cli_main(["no-such-source", "--input", "x"]) == 2
    assert cli_main(["taobao", "--input", str(tmp_path / "empty-missing")]) == 1


def test_ensure_dataset_uses_converts_or_explains(tmp_path, capsys):
    data, raw = tmp_path / "atomic", tmp_path / "raw"
    shutil.copytree(os.path.join(RAW, "unsplash"), raw / "unsplash")
    ensure_dataset("unsplash", str(data), str(raw))  # converts with the default filters
    printed = capsys.readouterr().out
    assert "read 6 conversions" in printed and "dropped 1 rows of users with fewer than 2 rows" in printed
    assert "kept 5 interactions" in printed
    assert (data / "unsplash" / "unsplash.inter").exists() and (data / "unsplash" / "unsplash.query").exists()
    ensure_dataset("unsplash", str(data), str(raw))  # now present: nothing is converted again
    assert capsys.readouterr().out == ""

    (data / "mine").mkdir()
    (data / "mine" / "mine.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    ensure_dataset("mine", str(data), str(raw))  # present: used as is, not a source
    assert capsys.readouterr().out == ""

    with pytest.raises(DatasetNotFoundError) as error:
        ensure_dataset("diginetica", str(data), str(raw))
    message = str(error.value)
    assert "\n" not in message and "train-item-views.csv" in message and "codalab" in message
    assert "python -m recbole_ext.data.convert diginetica --input" in message
    with pytest.raises(DatasetNotFoundError, match="known sources: .*diginetica"):
        ensure_dataset("no-such-data", str(data), str(raw))
    assert isinstance(error.value, ValueError)


def test_filters_that_leave_nothing_fail_clearly_and_write_nothing(tmp_path):
    # the paper default (items seen >= 5 times) empties the tiny fixture
    with pytest.raises(ValueError, match="no interactions left .*loosen the filter options"):
        convert("diginetica", os.path.join(RAW, "diginetica"), str(tmp_path / "diginetica"), out=lambda *_: None)
    assert os.listdir(tmp_path) == []


def test_run_single_converts_raw_files_automatically(tmp_path):
    """--dataset=taobao with only raw files present: converted (paper defaults, 5-core), merged into
    macro items by the base dataset (OPERATION_FIELD), trained and evaluated."""
    from recbole_ext.quick_start import run_single

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 31), 12)
    items = rng.integers(100, 112, size=len(users))
    ops = rng.choice(["pv", "pv", "cart", "fav", "buy"], size=len(users))
    times = 1511600000 + np.arange(len(users)) * 7
    raw = tmp_path / "raw" / "taobao"
    raw.mkdir(parents=True)
    pd.DataFrame({"u": users, "i": items, "c": 5, "op": ops, "t": times}).to_csv(
        raw / "UserBehavior.csv", header=False, index=False)
    result = run_single(
        "SASRec", "taobao", saved=False, read_command_line=False,
        config_dict={"data_path": str(tmp_path / "atomic"), "raw_data_path": str(tmp_path / "raw"),
                     "epochs": 1, "hidden_size": 8, "inner_size": 16, "n_layers": 1, "n_heads": 1,
                     "MAX_ITEM_LIST_LENGTH": 10, "show_progress": False, "state": "ERROR",
                     "train_neg_sample_args": None, "use_gpu": False},
    )
    assert (tmp_path / "atomic" / "taobao" / "taobao.inter").exists()
    assert "hit@10" in result["test_result"]


def test_write_atomic_cleans_text_and_writes_unix_lines(tmp_path):
    frame = pd.DataFrame({"u": ["a", '"quoted', "tab\there", None], "t": [1, 2.5, None, 4],
                          "words": ["x  y", " lead", "new\nline", "z"]})
    path = str(tmp_path / "d.inter")
    common.write_atomic(frame, path, [("u", "token"), ("t", "float"), ("words", "token_seq")])
    with open(path, "rb") as handle:
        assert handle.read() == (b"u:token\tt:float\twords:token_seq\n"
                                 b"a\t1.0\tx  y\nquoted\t2.5\tlead\ntab here\t\tnew line\n\t4.0\tz\n")


def test_jd_session_clock(tmp_path):
    folder = run("jd-appliances", "jd-appliances", tmp_path, NO_SESSION_FILTER)
    inter = read_atomic(folder / "jd-appliances.inter")
    # session 1: gaps 22, 5, 10 -> 0, 22, 27, 37; session 2 starts 1 s after session 1 ends
    assert list(inter["timestamp"].astype(float)) == [0, 22, 27, 37, 38, 41]
    assert list(inter["dwell_time"].astype(float)) == [27, 27, 3, 40, 2, 1]
    folder = run("jd-appliances", "jd-appliances", tmp_path, NO_SESSION_FILTER + ["--session-clock", "relative"],
                 name="jd-rel")
    assert list(read_atomic(folder / "jd-rel.inter")["timestamp"].astype(float)) == [0, 22, 27, 37, 0, 3]


def test_diginetica_snake_case_headers_of_the_public_samples(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(os.path.join(RAW, "diginetica"), raw)
    views = (raw / "train-item-views.csv").read_text().splitlines()
    views[0] = "session_id;user_id;item_id;timeframe;eventdate"  # SR-GNN's sample renames the header
    (raw / "train-item-views.csv").write_text("\n".join(views) + "\n")
    convert("diginetica", str(raw), str(tmp_path / "a"), argv=NO_SESSION_FILTER, out=lambda *_: None)
    reference = run("diginetica", "diginetica", tmp_path, NO_SESSION_FILTER, name="b")
    assert (tmp_path / "a" / "a.inter").read_text() == (reference / "b.inter").read_text()


_SLOW_CONVERSION = """
import sys, time
from recbole_ext.data.convert import taobao, convert
real = taobao.write_atomic
def slow(*args, **kwargs):
    real(*args, **kwargs)
    print("WRITING", flush=True)
    time.sleep(60)
taobao.write_atomic = slow
convert("taobao", sys.argv[1], sys.argv[2], argv=["--user-core", "1", "--item-core", "1"], out=lambda *_: None)
"""


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_killed_conversion_leftovers_are_removed_by_the_next_conversion(tmp_path, signal_name):
    import signal
    import subprocess
    import sys

    out = tmp_path / "taobao"
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CONVERSION, os.path.join(RAW, "taobao"), str(out)],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)),
    )
    try:
        assert child.stdout.readline().strip() == "WRITING"  # inside the temporary folder now
        child.send_signal(getattr(signal, signal_name))
        child.wait(timeout=30)
    finally:
        child.kill()
    left = [n for n in os.listdir(tmp_path) if n.startswith(".taobao.converting-")]
    assert len(left) == 1 and not out.exists()  # what the kill leaves (no finally ran)
    # a folder of a conversion still in progress (its process is alive) is kept
    alive = tmp_path / f".taobao.converting-{os.getppid()}-inprogress"
    alive.mkdir()
    convert("taobao", os.path.join(RAW, "taobao"), str(out), argv=NO_FILTER, out=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == sorted(["taobao", alive.name])
    assert (out / "taobao.inter").exists()


def test_planted_legacy_leftover_folders_are_removed(tmp_path):
    out = tmp_path / "taobao"
    for name in (".taobao.converting-abc123", ".taobao.old-xyz", ".other.converting-1-x"):
        (tmp_path / name).mkdir()
    convert("taobao", os.path.join(RAW, "taobao"), str(out), argv=NO_FILTER, out=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == [".other.converting-1-x", "taobao"]
