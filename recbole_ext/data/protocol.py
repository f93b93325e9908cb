"""Evaluation protocols (``eval_protocol``): the examples, split and candidates of every model alike.

A paper's claim is "our model beats the baselines under our protocol", so a protocol is data, not
a model: any sequential model, stock or extension, runs under any of these, and in a comparison
all models share it.

* ``next_item`` (default): RecBole's own examples, split (``eval_args``) and candidates. The dataset
  class and the dataloaders are exactly those of a run without this module.
* ``magnn`` (MA-GNN / HGN; ``paper`` is MAGNN's older name for it): per user the last
  ``ceil(magnn_test_ratio)`` of the sequence is test, the last ``ceil(magnn_valid_ratio)`` of the
  rest validation. Training examples have their target in the training part (with
  ``magnn_train_on_valid`` also in the validation part, the paper's final fit). One evaluation row
  per user: the input is what precedes the held-out part, the target is the whole held-out set,
  ranked over all items with the items the user already has excluded (RecBole's Recall@K and
  NDCG@K are then the paper's set recall and NDCG, IDCG over min(K, |set|)).
* ``hugt`` (HUGT): per user the first ``floor(hugt_train_ratio)`` of the events train, the rest is
  evaluated autoregressively (one example per held-out item, whose input holds the true earlier
  items), the evaluation users split at random (seeded, in token order, so every model gets the
  same users) into ``hugt_valid_users`` validation and the rest test; full ranking.
* ``dgsr`` (DGSR): leave-one-out (RecBole's ``LS: valid_and_test``), each target ranked against
  ``dgsr_negatives`` items the user never interacted with (in any split). The negatives are drawn
  once from the seed in token space, so they are the same for every model, epoch and run with that
  seed (RecBole's ``uniN`` redraws them at every evaluation from the global RNG, and at validation
  may draw the user's test item).
* ``embsr`` (EMBSR): one example per session (with ``SESSION_FIELD``; else per user): its last macro
  item is the target (the first micro-behaviour on it, by the micro-behaviour merge), its input the
  session's earlier macro items; sessions split by end time into ``embsr_split_ratios``.

How: RecBole's augmentation stays (one example per interaction but a user's first; the prefix of at
most ``MAX_ITEM_LIST_LENGTH`` items is its input). :class:`ProtocolDataset` tags every example with
its target's position in the user's sequence and lets the protocol choose the training and the
evaluation examples. It sits just below a dataset plugin in the class order, so the plugin's
``super().build()`` returns the protocol's split and every structure a plugin builds from
``train`` (graphs, SVD factors, counts) sees the protocol's training part only.
"""

import math
import sys

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
from recbole.data.interaction import Interaction
from recbole.utils import EvaluatorType

from recbole_ext.data.dataset.base import ExtSequentialDataset

PROTOCOLS = ("next_item", "magnn", "hugt", "dgsr", "embsr")
ALIASES = {"paper": "magnn"}  # MAGNN's name before protocols were shared
POSITION_FIELD = "protocol_position"  # position of an example's target in its user's sequence
FULL_RANKING = ("magnn", "hugt", "embsr")


# ------------------------------------------------------------------------------------ config
def protocol_of(config):
    """The protocol ``config`` asks for (aliases resolved); a ValueError naming the key otherwise."""
    value = config["eval_protocol"]
    name = ALIASES.get(value, value) if value is not None else "next_item"
    if name not in PROTOCOLS:
        raise ValueError(f"eval_protocol must be one of {list(PROTOCOLS)} (or 'paper' = 'magnn'), got {value!r}")
    return name


def _check(config, key, ok, expected):
    if not ok(config[key]):
        raise ValueError(f"'{key}' must be {expected}, got {config[key]!r}")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_protocol_config(config):
    """Check the protocol keys (all of them, whatever the protocol); return the protocol name."""
    name = protocol_of(config)
    fraction = lambda v: _is_number(v) and 0 <= v < 1  # noqa: E731
    _check(config, "magnn_test_ratio", fraction, "a number in [0, 1)")
    _check(config, "magnn_valid_ratio", fraction, "a number in [0, 1)")
    _check(config, "magnn_train_on_valid", lambda v: isinstance(v, bool), "True or False")
    _check(config, "hugt_train_ratio", lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)")
    _check(config, "hugt_valid_users", fraction, "a number in [0, 1)")
    _check(config, "dgsr_negatives", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
           "an integer >= 1")
    _check(config, "embsr_split_ratios",
           lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(r) and r >= 0 for r in v)
           and abs(sum(v) - 1) < 1e-6 and v[0] > 0,
           "three shares [train, valid, test] summing to 1")
    if name in FULL_RANKING:
        modes = config["eval_args"]["mode"]
        modes = set(modes.values()) if isinstance(modes, dict) else {modes}
        if config["eval_type"] != EvaluatorType.RANKING or modes != {"full"}:
            raise ValueError(f"eval_protocol '{name}' ranks all items; set eval_args.mode: full (got {modes})")
    if name != "next_item" and config["eval_args"]["order"] != "TO":
        raise ValueError(f"eval_protocol '{name}' splits each user's sequence by time; set eval_args.order: TO")
    return name


# ------------------------------------------------------------------------------------ dataset
def positions_within_groups(groups):
    """0, 1, 2, ... inside each run of equal values of a grouped (sorted) array."""
    n = len(groups)
    starts = np.ones(n, dtype=bool)
    starts[1:] = groups[1:] != groups[:-1]
    return np.arange(n) - np.maximum.accumulate(np.where(starts, np.arange(n), 0))


def magnn_split_lengths(lengths, test_ratio, valid_ratio):
    """Per-user (train, valid, test) lengths: test = last ceil(test ratio), valid = last
    ceil(valid ratio) of the rest (HGN's code)."""
    test = np.ceil(lengths * test_ratio - 1e-9).astype(np.int64)
    rest = lengths - test
    valid = np.ceil(rest * valid_ratio - 1e-9).astype(np.int64)
    return rest - valid, valid, test


def token_order(tokens):
    """Indices that sort string tokens (a model-independent order: ids depend on the plugin)."""
    return np.argsort(np.asarray(tokens).astype(str), kind="stable")


def crop_lists_to_suffix(examples, keep, list_suffix, length_field):
    """Keep the last ``keep[b]`` real positions of every ``*<list_suffix>`` field, moved to the
    front (lists are right-padded); the rest becomes padding."""
    length = examples[length_field]
    start = length - keep
    for field in list(examples.columns):
        if not field.endswith(list_suffix):
            continue
        values = examples[field]
        positions = torch.arange(values.shape[1]).unsqueeze(0)
        source = (positions + start.unsqueeze(1)).clamp(max=values.shape[1] - 1)
        mask = (positions < keep.unsqueeze(1)).view(source.shape + (1,) * (values.dim() - 2))
        index = source.view(source.shape + (1,) * (values.dim() - 2)).expand_as(values)
        examples[field] = torch.gather(values, 1, index) * mask
    examples[length_field] = keep
    return examples


def draw_negatives(rng, forbidden, n_candidates, count, chunk=1024):
    """``count`` distinct candidates per row, uniform over ``range(n_candidates)`` minus the row's
    ``forbidden`` boolean mask [rows, n_candidates]: the smallest of i.i.d. uniform keys."""
    rows = forbidden.shape[0]
    out = np.zeros((rows, count), dtype=np.int64)
    for begin in range(0, rows, chunk):
        keys = rng.random((min(chunk, rows - begin), n_candidates))
        keys[forbidden[begin:begin + chunk]] = np.inf
        out[begin:begin + chunk] = np.argsort(keys, axis=1, kind="stable")[:, :count]
    return out


class ProtocolDataset(ExtSequentialDataset):
    """A sequential dataset (or, below it in the class order, a plugin) split by ``eval_protocol``.

    After ``build()``: ``protocol_events`` (the user's interactions in order: user, item, time,
    session, position), ``protocol_rows`` (train/valid/test example indices into the built
    examples) and ``protocol_eval`` (per evaluation phase: the held-out sets and excluded items of
    ``magnn``, the negatives of ``dgsr``).
    """

    def data_augmentation(self):
        self._check_field("uid_field", "time_field")
        # RecBole's own (stable) sort, done again inside; the events are what it augments
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        feat = self.inter_feat
        session_field = self.config["SESSION_FIELD"]
        users = feat[self.uid_field].numpy().astype(np.int64)
        self.protocol_events = {
            "user": users,
            "item": feat[self.iid_field].numpy().astype(np.int64),
            "time": feat[self.time_field].numpy().astype(np.float64),
            "session": feat[session_field].numpy().astype(np.int64)
            if session_field and session_field in feat else None,
            "position": positions_within_groups(users),
        }
        super().data_augmentation()
        # one example per interaction but each user's first, in (user, time) order
        examples = self.inter_feat[self.uid_field].numpy()
        self.inter_feat[POSITION_FIELD] = torch.from_numpy(positions_within_groups(examples) + 1)

    def build(self):
        name = protocol_of(self.config)
        if name == "next_item":
            return super().build()
        if getattr(self, "example_selection", "every_boundary") != "every_boundary" and name != "embsr":
            raise ValueError(f"example_selection must be 'every_boundary' under eval_protocol '{name}' "
                             "(the protocol chooses the examples)")
        if self.benchmark_filename_list is not None:
            raise ValueError(f"eval_protocol '{name}' splits the data itself; drop benchmark_filename")
        self._change_feat_format()
        self.sort(by=self.time_field)  # as RecBole's ordered split does before splitting
        self.protocol_eval = {}
        train, valid, test = getattr(self, f"_split_{name}")()
        self.protocol_rows = {"train": train, "valid": valid, "test": test}
        datasets = []
        for rows in (train, valid, test):
            feat = self.inter_feat[torch.as_tensor(rows, dtype=torch.long)]
            del feat[POSITION_FIELD]
            datasets.append(self.copy(feat))
        return datasets

    def _user_lengths(self):
        return np.bincount(self.protocol_events["user"], minlength=self.user_num).astype(np.int64)

    def _example_users_positions(self):
        return self.inter_feat[self.uid_field].numpy(), self.inter_feat[POSITION_FIELD].numpy()

    # ------------------------------------------------------------------ magnn
    def _split_magnn(self):
        lengths = self._user_lengths()
        train_len, valid_len, test_len = magnn_split_lengths(
            lengths, self.config["magnn_test_ratio"], self.config["magnn_valid_ratio"])
        fit_len = train_len + valid_len if self.config["magnn_train_on_valid"] else train_len
        users, positions = self._example_users_positions()
        train = np.flatnonzero(positions < fit_len[users])
        events = self.protocol_events
        keys = events["user"] * self.item_num + events["item"]
        eval_rows = []
        for phase, begin, length in (("valid", train_len, valid_len), ("test", train_len + valid_len, test_len)):
            event_begin = begin[events["user"]]
            held_out = (events["position"] >= event_begin) & (events["position"] < event_begin + length[events["user"]])
            seen_keys = np.unique(keys[events["position"] < event_begin])
            # a held-out item the user already has is excluded from the ranking: never a target
            positive_keys = np.setdiff1d(np.unique(keys[held_out]), seen_keys, assume_unique=True)
            # the row whose target is the first held-out item holds the input before the part
            rows = np.flatnonzero((positions == begin[users]) & np.isin(users, positive_keys // self.item_num))
            rows = rows[np.argsort(users[rows], kind="stable")]
            kept_users = users[rows]
            positive_keys = positive_keys[np.isin(positive_keys // self.item_num, kept_users)]
            self.protocol_eval[phase] = {
                "positive_keys": torch.from_numpy(positive_keys),
                "masked_keys": torch.from_numpy(seen_keys[np.isin(seen_keys // self.item_num, kept_users)]),
            }
            eval_rows.append(rows)
        return train, eval_rows[0], eval_rows[1]

    # ------------------------------------------------------------------ hugt
    def _split_hugt(self):
        lengths = self._user_lengths()
        train_len = np.maximum(np.floor(lengths * self.config["hugt_train_ratio"] + 1e-9).astype(np.int64), 1)
        users, positions = self._example_users_positions()
        is_train = positions < train_len[users]
        eval_users = np.unique(users[~is_train])
        ordered = eval_users[token_order(self.id2token(self.uid_field, eval_users))]
        rng = np.random.default_rng(int(self.config["seed"]))
        shuffled = ordered[rng.permutation(len(ordered))]
        valid_users = shuffled[: int(round(len(shuffled) * self.config["hugt_valid_users"]))]
        in_valid = np.isin(users, valid_users)
        return (np.flatnonzero(is_train), np.flatnonzero(~is_train & in_valid),
                np.flatnonzero(~is_train & ~in_valid))

    # ------------------------------------------------------------------ dgsr
    def _split_dgsr(self):
        lengths = self._user_lengths()
        users, positions = self._example_users_positions()
        last = lengths[users] - 1
        # RecBole's leave_one_out(valid_and_test): last example test, the one before valid
        train, valid, test = (np.flatnonzero(positions < last - 1), np.flatnonzero(positions == last - 1),
                              np.flatnonzero(positions == last))
        events = self.protocol_events
        # candidates in token order, so that every plugin's id mapping gives the same items
        universe = np.unique(events["item"])
        universe = universe[token_order(self.id2token(self.iid_field, universe))]
        canonical = np.full(self.item_num, -1, dtype=np.int64)
        canonical[universe] = np.arange(len(universe))
        count = self.config["dgsr_negatives"]
        for index, (phase, rows) in enumerate((("valid", valid), ("test", test))):
            rows = rows[token_order(self.id2token(self.uid_field, users[rows]))]
            row_of_user = np.full(self.user_num, -1, dtype=np.int64)
            row_of_user[users[rows]] = np.arange(len(rows))
            forbidden = np.zeros((len(rows), len(universe)), dtype=bool)
            owned = row_of_user[events["user"]] >= 0
            forbidden[row_of_user[events["user"][owned]], canonical[events["item"][owned]]] = True
            allowed = len(universe) - forbidden.sum(1)
            if len(rows) and allowed.min() < count:
                raise ValueError(f"dgsr_negatives: {count} negatives per user, but a user has only "
                                 f"{allowed.min()} items never interacted with; lower dgsr_negatives")
            rng = np.random.default_rng([int(self.config["seed"]), index])
            negatives = universe[draw_negatives(rng, forbidden, len(universe), count)]
            self.protocol_eval[phase] = {"negatives": torch.from_numpy(negatives)}
            if phase == "valid":
                valid = rows
            else:
                test = rows
        return train, valid, test

    # ------------------------------------------------------------------ embsr
    def _split_embsr(self):
        users, positions = self._example_users_positions()
        session_field = self.config["SESSION_FIELD"]
        has_sessions = self.protocol_events["session"] is not None
        sessions = self.inter_feat[session_field].numpy() if has_sessions else np.zeros_like(users)
        # the last example of each (user, session): its target is the session's last macro item
        order = np.lexsort((positions, sessions, users))
        key_sorted = np.stack([users[order], sessions[order]], 1)
        is_last = np.ones(len(order), dtype=bool)
        is_last[:-1] = (key_sorted[1:] != key_sorted[:-1]).any(1)
        rows = order[is_last]
        # the input stops at the session start (inputs are in time order: a suffix)
        examples = self.inter_feat[torch.from_numpy(rows)]
        list_suffix = self.config["LIST_SUFFIX"]
        if has_sessions:
            session_list = examples[session_field + list_suffix]
            length = examples[self.item_list_length_field]
            real = torch.arange(session_list.shape[1]).unsqueeze(0) < length.unsqueeze(1)
            keep = (real & (session_list == examples[session_field].unsqueeze(1))).sum(1)
            examples = crop_lists_to_suffix(examples, keep, list_suffix, self.item_list_length_field)
        has_input = (examples[self.item_list_length_field] > 0).numpy()
        rows, examples = rows[has_input], examples[torch.from_numpy(np.flatnonzero(has_input))]
        # sessions ordered by end time (ties in token order), split 70/10/20 by default
        events = self.protocol_events
        event_sessions = events["session"] if has_sessions else np.zeros_like(events["user"])
        stride = int(max(event_sessions.max(initial=0), sessions.max(initial=0))) + 1
        event_key = events["user"] * stride + event_sessions
        unique_keys, inverse = np.unique(event_key, return_inverse=True)
        ends = np.full(len(unique_keys), -np.inf)
        np.maximum.at(ends, inverse, events["time"])
        end_time = ends[np.searchsorted(unique_keys, users[rows] * stride + sessions[rows])]
        user_tokens = np.asarray(self.id2token(self.uid_field, users[rows])).astype(str)
        session_tokens = (np.asarray(self.id2token(session_field, sessions[rows])).astype(str)
                          if has_sessions else np.zeros(len(rows), dtype=str))
        chronological = np.lexsort((session_tokens, user_tokens, end_time))
        shares = np.cumsum(self.config["embsr_split_ratios"])
        bounds = [int(round(len(rows) * share)) for share in shares[:2]]
        self.inter_feat = examples
        parts = np.split(chronological, bounds)
        self.protocol_session_rows = rows  # indices of the chosen examples among all examples
        return parts[0], parts[1], parts[2]


# ------------------------------------------------------------------------------------ classes
def _protocol_class(base):
    """``base`` (a dataset plugin) with :class:`ProtocolDataset` just below it in the class order."""
    if base is ExtSequentialDataset or base is ProtocolDataset:
        return ProtocolDataset
    name = f"{base.__name__}UnderProtocol"
    module = sys.modules[__name__]
    cls = getattr(module, name, None) if name in vars(module) else None
    if cls is None:
        cls = type(name, (base, ProtocolDataset), {"__module__": __name__, "__qualname__": name})
        setattr(module, name, cls)
    return cls


def __getattr__(name):
    """Recreate a protocol class by name (unpickling a saved dataset in a fresh process)."""
    if name.endswith("UnderProtocol"):
        from recbole_ext import registry

        paths = [spec.dataset for spec in registry.EXTENSION_MODELS.values() if spec.dataset]
        for path in paths:
            if path.rpartition(".")[2] == name[: -len("UnderProtocol")]:
                return _protocol_class(registry.import_object(path))
    raise AttributeError(name)


def dataset_class(config, base):
    """The dataset class of a run: ``base`` under ``next_item``, else ``base`` split by the protocol."""
    name = validate_protocol_config(config)
    if name == "next_item":
        return base
    if base is None or not issubclass(base, ExtSequentialDataset):
        raise ValueError(f"eval_protocol '{name}' applies to sequential models of this package or RecBole; "
                         f"model '{config['model']}' has its own dataset type")
    return _protocol_class(base)


# ------------------------------------------------------------------------------------ loaders
def expand_ranges(starts, ends):
    """(range id, index) pairs of the concatenated ranges ``[starts[i], ends[i])``, vectorised."""
    counts = ends - starts
    range_id = torch.repeat_interleave(torch.arange(len(starts)), counts)
    first = torch.cumsum(counts, 0) - counts
    index = torch.arange(int(counts.sum())) - first[range_id] + starts[range_id]
    return range_id, index


class SetEvalDataLoader(FullSortEvalDataLoader):
    """``magnn``: full ranking, one row per user, against the user's whole held-out set, the
    user's known items excluded.

    Batches are ``(interaction, (row, item) to exclude, positive rows, positive items)`` as
    RecBole's ``FullSortEvalDataLoader`` gives, so RecBole's trainer and metrics apply unchanged.
    ``_dataset`` holds the (user, held-out item) target pairs (what a comparison's target digest
    reads); the evaluated rows are ``examples``.
    """

    def __init__(self, config, examples, eval_set):
        self.examples = examples
        self.n_items = examples.item_num
        self.positive_keys = eval_set["positive_keys"]
        self.masked_keys = eval_set["masked_keys"]
        pairs = examples.copy(Interaction({
            examples.uid_field: self.positive_keys // self.n_items,
            examples.iid_field: self.positive_keys % self.n_items,
        }))
        self.sample_size = len(examples)
        AbstractDataLoader.__init__(self, config, pairs, None, shuffle=False)
        self.uid_field, self.iid_field = examples.uid_field, examples.iid_field
        self.is_sequential = False  # the trainer masks the excluded pairs

    def _init_batch_size_and_step(self):
        self.step = self.config["eval_batch_size"]
        self.set_batch_size(self.step)

    def _user_pairs(self, sorted_keys, users):
        starts = torch.searchsorted(sorted_keys, users * self.n_items)
        ends = torch.searchsorted(sorted_keys, (users + 1) * self.n_items)
        row, index = expand_ranges(starts, ends)
        return row, sorted_keys[index] % self.n_items

    def collate_fn(self, index):
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        interaction = self.transform(self.examples, self.examples[index])
        users = interaction[self.uid_field]
        masked = self._user_pairs(self.masked_keys, users)
        positive_u, positive_i = self._user_pairs(self.positive_keys, users)
        return interaction, masked, positive_u, positive_i


class FixedNegativesEvalDataLoader(AbstractDataLoader):
    """``dgsr``: each example's target against the protocol's fixed negatives.

    Batches follow RecBole's sampled evaluation (``NegSampleEvalDataLoader``): the examples
    repeated once per candidate, positives first, so RecBole's trainer scores them with ``predict``.
    """

    def __init__(self, config, examples, negatives):
        self.negatives = negatives
        self.times = 1 + negatives.shape[1]
        self.sample_size = len(examples)
        super().__init__(config, examples, None, shuffle=False)

    def _init_batch_size_and_step(self):
        self.step = max(1, self.config["eval_batch_size"] // self.times)
        self.set_batch_size(self.step * self.times)

    def collate_fn(self, index):
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        interaction = self.transform(self._dataset, self._dataset[index])
        iid_field = self._dataset.iid_field
        targets = interaction[iid_field]
        candidates = torch.cat([targets.unsqueeze(1), self.negatives[index]], dim=1)  # [B, 1 + N]
        repeated = interaction.repeat(self.times)
        repeated.update(Interaction({iid_field: candidates.t().reshape(-1)}))
        rows = torch.arange(len(index))
        return repeated, rows.repeat(self.times), rows, targets


def data_preparation(config, dataset):
    """(train, valid, test) loaders under a protocol other than ``next_item``."""
    from recbole.data import data_preparation as recbole_data_preparation
    from recbole.data.utils import create_samplers, get_dataloader

    name = protocol_of(config)
    if name in ("hugt", "embsr"):  # RecBole's full ranking over the protocol's examples
        return recbole_data_preparation(config, dataset)
    built = dataset.build()
    train_sampler, _, _ = create_samplers(config, dataset, built)
    train = get_dataloader(config, "train")(config, built[0], train_sampler, shuffle=config["shuffle"])
    if name == "magnn":
        evaluation = [SetEvalDataLoader(config, part, dataset.protocol_eval[phase])
                      for phase, part in zip(("valid", "test"), built[1:])]
    else:
        evaluation = [FixedNegativesEvalDataLoader(config, part, dataset.protocol_eval[phase]["negatives"])
                      for phase, part in zip(("valid", "test"), built[1:])]
    return train, evaluation[0], evaluation[1]


def eval_rows(loader):
    """The evaluated examples of any evaluation loader of a protocol."""
    return getattr(loader, "examples", loader._dataset)


def candidates_digest(loader):
    """sha256 of the (user, target, negatives) tokens of a ``dgsr`` loader, in user-token order;
    None for loaders that rank all items. Equal for two models iff they rank the same candidates
    (the target digest of :mod:`recbole_ext.compare` covers the targets only)."""
    import hashlib

    if not isinstance(loader, FixedNegativesEvalDataLoader):
        return None
    dataset = loader._dataset
    feat = dataset.inter_feat
    users = np.asarray(dataset.id2token(dataset.uid_field, feat[dataset.uid_field].numpy())).astype(str)
    candidates = torch.cat([feat[dataset.iid_field].unsqueeze(1), loader.negatives], dim=1).numpy()
    tokens = np.asarray(dataset.id2token(dataset.iid_field, candidates)).astype(str)
    digest = hashlib.sha256()
    for row in np.argsort(users, kind="stable"):
        digest.update(("\t".join([users[row], *tokens[row]]) + "\n").encode("utf-8"))
    return f"{len(users)}:{digest.hexdigest()[:16]}"
