"""Batch transform and data preparation of MA-GNN (Ma et al., AAAI 2020).

``MultiTargetTransform`` adds to every batch the short-term window L (the last ``window_length``
inputs), the earlier history H (at most ``history_length`` items before the window), and, for
training batches, the ``target_length`` targets that follow the window inside the training part of
the user's sequence, each with one uniform negative outside the user's training items. Windows and
histories are right-aligned (the most recent item in the last column) and padded with item 0.

``magnn_data_preparation`` gives RecBole's loaders (plus the transform) under the default
``next_item`` protocol, and under ``eval_protocol: paper`` a training loader over sliding windows
and ``SetEvalDataLoader``s that rank all items once per user against the whole held-out set,
with the items the user has already seen excluded (RecBole's Recall and NDCG then compute the
paper's set recall and NDCG, with IDCG over min(K, |held-out set|)).
"""

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader, TrainDataLoader
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
from recbole.data.interaction import Interaction
from recbole.utils import EvaluatorType

from recbole_ext.data.dataset.multi_target import (
    HISTORY_FIELD,
    NEGATIVES_FIELD,
    TARGET_POSITION_FIELD,
    TARGETS_FIELD,
    WINDOW_FIELD,
)


def right_aligned_span(item_seq, end, width):
    """Columns ``end - width .. end - 1`` of each row of a right-padded ``item_seq``, right-aligned.

    Positions before the start of a row are padding (0). ``end`` is a ``[B]`` tensor.
    """
    columns = end.unsqueeze(1) - width + torch.arange(width, device=item_seq.device).unsqueeze(0)
    valid = columns >= 0
    gathered = item_seq.gather(1, columns.clamp(min=0, max=max(item_seq.size(1) - 1, 0)))
    return torch.where(valid, gathered, torch.zeros_like(gathered))


def window_and_history(item_seq, item_length, window_length, history_length):
    """Short-term window L (last ``window_length`` inputs) and history H (up to ``history_length``
    items before L) of right-padded RecBole prefixes; both right-aligned, 0 = padding."""
    window = right_aligned_span(item_seq, item_length, window_length)
    history_end = (item_length - window_length).clamp(min=0)
    history = right_aligned_span(item_seq, history_end, history_length)
    return window, history


def gather_from_sequences(seq_items, seq_offsets, users, positions, valid):
    """``seq_items[seq_offsets[u] + p]`` for a tensor of positions; 0 where ``valid`` is False."""
    flat = seq_offsets[users].unsqueeze(-1) + positions if positions.dim() > 1 else seq_offsets[users] + positions
    flat = flat.clamp(min=0, max=max(len(seq_items) - 1, 0))
    items = seq_items[flat] if len(seq_items) else torch.zeros_like(flat)
    return torch.where(valid, items, torch.zeros_like(items))


def sample_negatives(user_item_keys, users, shape, n_items, generator, max_rounds=20):
    """Uniform items in ``[1, n_items)``, redrawn (vectorised) while they hit the user's keys."""
    negatives = torch.randint(1, n_items, shape, generator=generator)
    expanded_users = users.unsqueeze(-1).expand(shape)
    for _ in range(max_rounds):
        keys = expanded_users * n_items + negatives
        hit = _contains(user_item_keys, keys)
        if not hit.any():
            break
        redrawn = torch.randint(1, n_items, shape, generator=generator)
        negatives = torch.where(hit, redrawn, negatives)
    return negatives


def _contains(sorted_keys, keys):
    if len(sorted_keys) == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    index = torch.searchsorted(sorted_keys, keys).clamp(max=len(sorted_keys) - 1)
    return sorted_keys[index] == keys


class MultiTargetTransform:
    """Adds window, history and (training) multi-targets with negatives to a batch."""

    def __init__(self, config, dataset, phase):
        self.phase = phase
        self.protocol = config["eval_protocol"]
        self.window_length = config["window_length"]
        self.history_length = config["history_length"]
        self.target_length = config["target_length"]
        self.sample_negatives = config["loss_type"] == "BPR"
        self.uid_field = config["USER_ID_FIELD"]
        self.item_seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
        self.item_length_field = config["ITEM_LIST_LENGTH_FIELD"]
        self.n_items = dataset.item_num
        self.seq_items = dataset.magnn_seq_items
        self.seq_offsets = dataset.magnn_seq_offsets
        self.train_lengths = dataset.magnn_train_lengths
        self.train_keys = dataset.magnn_train_keys
        self.generator = torch.Generator().manual_seed(int(config["seed"]))

    def __call__(self, dataset, interaction):
        users = interaction[self.uid_field]
        new_fields = {}
        if self.protocol == "next_item":
            new_fields[WINDOW_FIELD], new_fields[HISTORY_FIELD] = window_and_history(
                interaction[self.item_seq_field], interaction[self.item_length_field],
                self.window_length, self.history_length,
            )
        else:  # paper protocol: the rows hold (user, first position after the window)
            end = interaction[TARGET_POSITION_FIELD]
            window_positions = end.unsqueeze(1) - self.window_length + torch.arange(self.window_length)
            history_positions = window_positions[:, :1] - self.history_length + torch.arange(self.history_length)
            for field, positions in ((WINDOW_FIELD, window_positions), (HISTORY_FIELD, history_positions)):
                new_fields[field] = gather_from_sequences(
                    self.seq_items, self.seq_offsets, users, positions, positions >= 0
                )
        if self.phase == "train":
            positions = interaction[TARGET_POSITION_FIELD].unsqueeze(1) + torch.arange(self.target_length)
            in_training_part = positions < self.train_lengths[users].unsqueeze(1)
            targets = gather_from_sequences(self.seq_items, self.seq_offsets, users, positions, in_training_part)
            new_fields[TARGETS_FIELD] = targets
            if self.sample_negatives:
                new_fields[NEGATIVES_FIELD] = sample_negatives(
                    self.train_keys, users, targets.shape, self.n_items, self.generator
                )
        interaction.update(Interaction(new_fields))
        return interaction


def expand_ranges(starts, ends):
    """(range id, index) pairs of the concatenated ranges ``[starts[i], ends[i])``, vectorised."""
    counts = ends - starts
    range_id = torch.repeat_interleave(torch.arange(len(starts)), counts)
    first = torch.cumsum(counts, 0) - counts
    index = torch.arange(int(counts.sum())) - first[range_id] + starts[range_id]
    return range_id, index


class SetEvalDataLoader(FullSortEvalDataLoader):
    """Full ranking, one row per user, against the user's whole held-out set (paper protocol).

    Batches are ``(interaction, (row, item) to exclude, positive rows, positive items)``, as
    RecBole's ``FullSortEvalDataLoader`` gives for general models, so RecBole's trainer and metrics
    apply unchanged.
    """

    def __init__(self, config, dataset, eval_set, shuffle=False):
        self.uid_field = dataset.uid_field
        self.iid_field = dataset.iid_field
        self.n_items = dataset.item_num
        self.users = eval_set["users"]
        self.window_end = eval_set["window_end"]
        self.positive_keys = eval_set["positive_keys"]
        self.masked_keys = eval_set["masked_keys"]
        self.sample_size = len(self.users)  # one row per user; the dataset holds its target pairs
        AbstractDataLoader.__init__(self, config, dataset, None, shuffle=False)
        self.is_sequential = False

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
        rows = Interaction({self.uid_field: self.users[index], TARGET_POSITION_FIELD: self.window_end[index]})
        interaction = self.transform(self._dataset, rows)
        users = interaction[self.uid_field]
        masked = self._user_pairs(self.masked_keys, users)
        positive_u, positive_i = self._user_pairs(self.positive_keys, users)
        return interaction, masked, positive_u, positive_i


def magnn_data_preparation(config, dataset):
    """(train, valid, test) loaders of MA-GNN under ``config['eval_protocol']``."""
    if config["eval_protocol"] != "paper":
        from recbole.data import data_preparation as recbole_data_preparation

        from recbole_ext.data import install_transforms

        loaders = recbole_data_preparation(config, dataset)
        install_transforms(config, dataset, loaders)
        return loaders

    if config["eval_type"] != EvaluatorType.RANKING or set(config["eval_args"]["mode"].values()) != {"full"}:
        raise ValueError("MAGNN: eval_protocol 'paper' ranks all items; set eval_args.mode: full")
    train, valid, test = dataset.build()
    train_loader = TrainDataLoader(config, train, None, shuffle=config["shuffle"])
    valid_loader = SetEvalDataLoader(config, valid, dataset.magnn_eval_sets["valid"])
    test_loader = SetEvalDataLoader(config, test, dataset.magnn_eval_sets["test"])
    loaders = (train_loader, valid_loader, test_loader)
    for phase, loader in zip(("train", "valid", "test"), loaders):
        loader.transform = MultiTargetTransform(config, dataset, phase)
    return loaders
