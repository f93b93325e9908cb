"""Speed of the converters and of atomic-file validation on generated raw files.

    python benchmarks/bench_convert.py [--rows 1000000]

Generates a Taobao-format ``UserBehavior.csv`` and DIGINETICA-format views/queries of about
``--rows`` rows in a temporary folder, converts them (paper-default filters), validates the
written atomic files, and prints seconds and rows per second for each step.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_ext.data.convert import convert  # noqa: E402
from recbole_ext.data.validate import validate_atomic_dataset  # noqa: E402


def make_taobao(folder, rows, rng):
    os.makedirs(folder)
    users = np.sort(rng.integers(1, rows // 50 + 2, rows))
    frame = pd.DataFrame({
        "user": users, "item": rng.zipf(1.3, rows) % 200_000, "cat": rng.integers(1, 9000, rows),
        "op": rng.choice(["pv"] * 9 + ["cart", "fav", "buy"], rows),
        "ts": rng.integers(1511539200, 1512316799, rows),
    })
    frame.to_csv(os.path.join(folder, "UserBehavior.csv"), header=False, index=False)


def make_diginetica(folder, rows, rng):
    os.makedirs(folder)
    sessions = np.sort(rng.integers(1, rows // 5 + 2, rows))
    dates = pd.to_datetime(1451606400 + (sessions % 150) * 86400, unit="s").strftime("%Y-%m-%d")
    pd.DataFrame({"sessionId": sessions, "userId": "NA", "itemId": rng.zipf(1.3, rows) % 100_000,
                  "timeframe": rng.integers(0, 3_600_000, rows), "eventdate": dates}).to_csv(
        os.path.join(folder, "train-item-views.csv"), sep=";", index=False)
    n_queries = rows // 4
    q_sessions = rng.choice(sessions, n_queries)
    tokens = pd.Series(rng.integers(1, 50_000, (n_queries, 3)).astype(str).tolist()).str.join(",")
    tokens[rng.random(n_queries) < 0.9] = ""  # most SERPs are category browsing
    pd.DataFrame({"queryId": np.arange(1, n_queries + 1), "sessionId": q_sessions, "userId": "NA",
                  "timeframe": rng.integers(0, 3_600_000, n_queries), "duration": 100,
                  "eventdate": pd.to_datetime(1451606400 + (q_sessions % 150) * 86400, unit="s").strftime("%Y-%m-%d"),
                  "searchstring.tokens": tokens, "categoryId": rng.integers(0, 1000, n_queries),
                  "items": "1,2,3", "is.test": "FALSE"}).to_csv(
        os.path.join(folder, "train-queries.csv"), sep=";", index=False)


def timed(label, rows, function):
    start = time.perf_counter()
    function()
    seconds = time.perf_counter() - start
    print(f"{label:45s} {seconds:7.2f} s  {rows / seconds:12,.0f} rows/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    quiet = lambda *_: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        make_taobao(os.path.join(tmp, "raw", "taobao"), args.rows, rng)
        make_diginetica(os.path.join(tmp, "raw", "diginetica"), args.rows, rng)
        out = os.path.join(tmp, "atomic")
        timed(f"convert taobao ({args.rows:,} raw rows)", args.rows,
              lambda: convert("taobao", os.path.join(tmp, "raw", "taobao"), os.path.join(out, "taobao"), out=quiet))
        timed(f"convert diginetica ({args.rows:,} views)", args.rows,
              lambda: convert("diginetica", os.path.join(tmp, "raw", "diginetica"),
                              os.path.join(out, "diginetica"), out=quiet))
        for name in ("taobao", "diginetica"):
            folder = os.path.join(out, name)
            lines = sum(sum(1 for _ in open(os.path.join(folder, f))) for f in os.listdir(folder))
            timed(f"validate {name} ({lines:,} lines in all files)", lines,
                  lambda: validate_atomic_dataset(folder, name))


if __name__ == "__main__":
    main()
