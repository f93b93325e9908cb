"""A seeded generator of sequential data with planted, documented signals.

Each of the five extension models is built to exploit one kind of side information; this
generator plants each kind, with a known strength, so that a model that uses it has something to
find and a model that ignores it (SASRec) measurably does not.

The world:
- ``n_items`` items split into ``n_intents`` contiguous groups (the item's *intent*,
  ``synthetic.item``). Each intent has ``words_per_intent`` query words (``w<intent>_<j>``); each
  word is linked to a slice of the intent's items (its *word items*). There are also
  ``noise_words`` words (``n<j>``) that carry no intent.
- A global co-visit graph: every item has three successors (mostly of its own intent), the same
  for all users. Successor 0 is its *complement*, 1 its *detail* successor, 2 its *view* successor.
- Each user prefers three intents (Dirichlet weights): a long-term, user-level signal.

A user's history is a list of sessions (gaps of about a day). A session draws an intent from the
user's preferences and starts with a search query (1-3 words of the intent, sometimes with a
noise word); the first click is one of the query's word items with probability
``p_click_matches_query``. Each later click follows the co-visit graph with probability
``p_follow_covisit``; which successor depends on the micro-behaviours on the previous item:
a run containing ``cart``/``buy`` leads to the complement, ``detail``/``comments`` to the detail
successor, a bare ``view`` to the view successor. Otherwise the click is a random item of the
session's intent. With probability ``p_intent_switch`` the intent changes before a click, and the
user announces it with a new query a few seconds before that click.

Each click is a run of micro-behaviours (``view``, ``detail``, ``comments``, ``cart``, ``buy``),
one ``.inter`` row each, seconds apart: ``synthetic.inter`` holds micro-behaviour rows, which the
package merges into macro items (see ``recbole_ext/data/dataset/base.py``).

*Direct items* (item id a multiple of ``direct_item_every``: the items users act on from the
listing, without opening the page first): a click on one of them whose run holds ``cart``/``buy``
starts with ``cart`` instead of ``view``, one holding ``detail``/``comments`` starts with
``detail`` (probability ``p_direct_start``). Every other run starts with ``view``. So the first
operation on a macro item predicts the item (a ``cart`` or ``detail`` start names a direct item),
which is what EMBSR's ``star_op: target`` reads from the held-out target (a leak the leak-free
default never uses). The rewrite is drawn from its own random stream after the clicks are
generated and keeps the run's successor slot (a run with ``cart`` still has it), so the item
sequences, row counts, queries and every other signal are those of the generator without it.

Knobs of repeat consumption and query informativeness (defaults: off, i.e. the data above
exactly; the variant ``synthetic-weakq`` turns them on, see the README):

- ``p_repeat``: before each later click of a session, the probability that it is a re-view of an
  item seen earlier in the session (uniform among them; never the item just clicked, which would
  merge into the same macro item).
- ``query_synonyms`` / ``zipf_exponent``: each query word has ``query_synonyms`` surface forms
  (``w<intent>_<j>_<s>``) drawn with Zipf weights ``1 / (s + 1) ** zipf_exponent``: a large
  vocabulary with many rare words, as hashed search tokens are.
- ``p_query_names_next``: the probability that a query is about the next click; otherwise its
  words are those of a random intent and the click is a random item of the session's intent.
- ``p_noise_query``: before each click, the probability of an extra query made of noise words
  only, issued 2-15 s before the click (it names nothing).

Files: ``<name>.inter`` (user_id, item_id, timestamp, session_id, op), ``<name>.query``
(user_id, session_id, timestamp, query), ``<name>.item`` (item_id, intent).

Command line: ``python -m recbole_ext.data.synthetic --users 600 --items 500 --seed 2020``; the
shipped weak-query variant: ``python -m recbole_ext.data.synthetic`` followed by
:data:`WEAKQ_ARGS`.
"""

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

OPERATION_PATTERNS = [  # (run of micro-behaviours, probability)
    (("view",), 0.40),
    (("view", "detail"), 0.22),
    (("view", "detail", "comments"), 0.13),
    (("view", "cart"), 0.13),
    (("view", "detail", "cart", "buy"), 0.12),
]


# The shipped variant dataset_atomic/synthetic-weakq/: weak queries (a large Zipf vocabulary of
# rare words, half the queries about something else, noise queries) and frequent re-views.
WEAKQ_ARGS = ["--name", "synthetic-weakq", "--p_repeat", "0.3", "--query_synonyms", "50",
              "--p_query_names_next", "0.5", "--p_noise_query", "0.3"]


def successor_slot(operation_run):
    """Which co-visit successor follows a click with this run of micro-behaviours."""
    if "cart" in operation_run or "buy" in operation_run:
        return 0
    if "detail" in operation_run or "comments" in operation_run:
        return 1
    return 2


@dataclass
class SyntheticConfig:
    users: int = 600
    items: int = 500
    intents: int = 10
    words_per_intent: int = 6
    noise_words: int = 20
    mean_sessions: float = 3.0  # per user, plus one
    mean_session_length: float = 4.0  # clicks per session, plus two
    p_click_matches_query: float = 0.9
    p_follow_covisit: float = 0.6
    p_intent_switch: float = 0.15
    p_same_intent_successor: float = 0.85
    direct_item_every: int = 4  # items with id % direct_item_every == 0 are direct items (0: none)
    p_direct_start: float = 1.0  # a direct item's cart/detail run starts with cart/detail
    p_repeat: float = 0.0  # re-view of an item seen earlier in the session
    query_synonyms: int = 1  # surface forms per query word (Zipf-weighted)
    zipf_exponent: float = 1.0
    p_query_names_next: float = 1.0
    p_noise_query: float = 0.0
    seed: int = 2020
    name: str = "synthetic"


@dataclass
class SyntheticData:
    inter: pd.DataFrame
    query: pd.DataFrame
    item: pd.DataFrame
    successors: np.ndarray  # [n_items, 3] global co-visit graph (item tokens are 1-based ids)
    word_items: dict = field(default_factory=dict)  # word -> array of item ids


def _world(cfg, rng):
    items_per_intent = cfg.items // cfg.intents
    n_items = items_per_intent * cfg.intents
    item_ids = np.arange(1, n_items + 1)
    intent_of = (item_ids - 1) // items_per_intent
    intent_items = [item_ids[intent_of == k] for k in range(cfg.intents)]
    successors = np.zeros((n_items + 1, 3), dtype=np.int64)
    for item in item_ids:
        own = intent_items[intent_of[item - 1]]
        for slot in range(3):
            pool = own if rng.random() < cfg.p_same_intent_successor else item_ids
            choice = item
            while choice == item:
                choice = rng.choice(pool)
            successors[item, slot] = choice
    word_items = {}
    for k in range(cfg.intents):
        chunks = np.array_split(rng.permutation(intent_items[k]), cfg.words_per_intent)
        for j, chunk in enumerate(chunks):
            word_items[f"w{k}_{j}"] = np.sort(chunk)
    return intent_of, intent_items, successors, word_items


def _check(cfg):
    for key in ("p_click_matches_query", "p_follow_covisit", "p_intent_switch",
                "p_same_intent_successor", "p_direct_start", "p_repeat", "p_query_names_next",
                "p_noise_query"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise ValueError(f"{key} must be in [0, 1], got {getattr(cfg, key)}")
    if cfg.query_synonyms < 1 or cfg.direct_item_every < 0:
        raise ValueError("query_synonyms must be >= 1 and direct_item_every >= 0")


def direct_start(run):
    """The run a direct item's click gets: its first ``view`` becomes the run's decisive
    operation (``cart`` for a run with cart/buy, ``detail`` for one with detail/comments); the
    successor slot (:func:`successor_slot`) is unchanged."""
    slot = successor_slot(run)
    if slot == 2:
        return run
    return ("cart" if slot == 0 else "detail",) + tuple(run[1:])


def _rewrite_direct_starts(cfg, inter_rows, click_starts):
    """Rewrite the first operation of direct items' clicks (own random stream, see module doc)."""
    if not cfg.direct_item_every or not click_starts:
        return
    draws = np.random.default_rng([cfg.seed, 1]).random(len(click_starts))
    for (row, run), u in zip(click_starts, draws):
        user, item, time, session, _ = inter_rows[row]
        if item % cfg.direct_item_every == 0 and u < cfg.p_direct_start:
            first = direct_start(run)[0]
            inter_rows[row] = (user, item, time, session, first)


def generate(cfg=None):
    """Generate the dataset in memory (deterministic for a given config and seed)."""
    cfg = cfg or SyntheticConfig()
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    intent_of, intent_items, successors, word_items = _world(cfg, rng)
    pattern_runs = [run for run, _ in OPERATION_PATTERNS]
    pattern_p = np.array([p for _, p in OPERATION_PATTERNS])
    synonym_p = 1.0 / (np.arange(cfg.query_synonyms) + 1.0) ** cfg.zipf_exponent
    synonym_p /= synonym_p.sum()
    inter_rows, query_rows, click_starts = [], [], []
    session_counter = 0
    base_time = 1_700_000_000

    def word(intent, j):
        if cfg.query_synonyms == 1:
            return f"w{intent}_{j}"
        return f"w{intent}_{j}_{rng.choice(cfg.query_synonyms, p=synonym_p)}"

    def issue_query(user, session, time, intent):
        """Issue a query; returns the items it names (None if it is about something else)."""
        names_next = cfg.p_query_names_next >= 1 or rng.random() < cfg.p_query_names_next
        topic = intent if names_next else int(rng.integers(cfg.intents))
        n_words = rng.integers(1, 4)
        words = list(rng.choice(cfg.words_per_intent, size=n_words, replace=False))
        tokens = [word(topic, j) for j in words]
        if rng.random() < 0.2:
            tokens.append(f"n{rng.integers(cfg.noise_words)}")
        query_rows.append((user, session, time, " ".join(tokens)))
        # the first word names what the user looks for
        return word_items[f"w{topic}_{words[0]}"] if names_next else None

    for user in range(1, cfg.users + 1):
        preferred = rng.choice(cfg.intents, size=3, replace=False)
        weights = rng.dirichlet(np.ones(3))
        time = base_time + int(rng.integers(0, 365 * 86400))
        for _ in range(1 + rng.poisson(cfg.mean_sessions)):
            session_counter += 1
            session = session_counter
            time += int(rng.exponential(86400)) + 3600
            intent = preferred[rng.choice(3, p=weights)]
            candidates = issue_query(user, session, time, intent)
            time += int(rng.integers(2, 15))
            previous, previous_run = None, None
            session_items = []
            for step in range(2 + rng.poisson(cfg.mean_session_length)):
                if step > 0 and rng.random() < cfg.p_intent_switch:
                    intent = preferred[rng.choice(3, p=weights)] if rng.random() < 0.7 else rng.integers(cfg.intents)
                    candidates = issue_query(user, session, time, intent)
                    time += int(rng.integers(2, 15))
                    previous = None
                if cfg.p_noise_query > 0 and rng.random() < cfg.p_noise_query:
                    noise = rng.choice(cfg.noise_words, size=rng.integers(1, 3), replace=False)
                    query_rows.append((user, session, time, " ".join(f"n{j}" for j in noise)))
                    time += int(rng.integers(2, 15))
                seen = [i for i in dict.fromkeys(session_items) if i != previous]
                if cfg.p_repeat > 0 and step > 0 and seen and rng.random() < cfg.p_repeat:
                    item = int(rng.choice(seen))
                elif previous is None:
                    if candidates is None:
                        pool = intent_items[intent]
                    else:
                        pool = candidates if rng.random() < cfg.p_click_matches_query else intent_items[intent]
                    item = int(rng.choice(pool))
                elif rng.random() < cfg.p_follow_covisit:
                    item = int(successors[previous, successor_slot(previous_run)])
                else:
                    item = int(rng.choice(intent_items[intent]))
                run = pattern_runs[rng.choice(len(pattern_runs), p=pattern_p)]
                click_starts.append((len(inter_rows), run))
                for operation in run:
                    inter_rows.append((user, item, time, session, operation))
                    time += int(rng.integers(3, 30))
                previous, previous_run = item, run
                session_items.append(item)
                time += int(rng.exponential(60)) + 5

    _rewrite_direct_starts(cfg, inter_rows, click_starts)
    inter = pd.DataFrame(inter_rows, columns=["user_id", "item_id", "timestamp", "session_id", "op"])
    query = pd.DataFrame(query_rows, columns=["user_id", "session_id", "timestamp", "query"])
    item = pd.DataFrame({"item_id": np.arange(1, len(intent_of) + 1), "intent": intent_of})
    if cfg.query_synonyms > 1:  # every surface form names its word's items
        word_items = {f"{w}_{s}": items for w, items in word_items.items()
                      for s in range(cfg.query_synonyms)}
    return SyntheticData(inter, query, item, successors, word_items)


_HEADERS = {
    "inter": ["user_id:token", "item_id:token", "timestamp:float", "session_id:token", "op:token"],
    "query": ["user_id:token", "session_id:token", "timestamp:float", "query:token_seq"],
    "item": ["item_id:token", "intent:token"],
}


def write_atomic(data, output_dir, name="synthetic"):
    """Write the atomic files into ``output_dir`` (created via a temporary folder + rename, so an
    interrupted run never leaves a half-written dataset)."""
    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=parent)
    os.chmod(staging, 0o755)  # mkdtemp creates 0700; the dataset is meant to be shared
    try:
        for suffix, frame in (("inter", data.inter), ("query", data.query), ("item", data.item)):
            path = os.path.join(staging, f"{name}.{suffix}")
            frame.to_csv(path, sep="\t", index=False, header=_HEADERS[suffix], lineterminator="\n")
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def main(argv=None):
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for key, value in vars(defaults).items():
        parser.add_argument(f"--{key}", type=type(value), default=value)
    parser.add_argument("--output", default=None, help="folder to write (default: dataset_atomic/<name>/)")
    args = vars(parser.parse_args(argv))
    output = args.pop("output")
    cfg = SyntheticConfig(**args)
    if output is None:
        from recbole_ext.paths import DATASET_ATOMIC_DIR

        output = os.path.join(DATASET_ATOMIC_DIR, cfg.name)
    data = generate(cfg)
    write_atomic(data, output, cfg.name)
    print(
        f"wrote {output}: {len(data.inter)} micro-behaviour rows, {len(data.query)} queries, "
        f"{cfg.users} users, {len(data.item)} items"
    )


if __name__ == "__main__":
    main()
