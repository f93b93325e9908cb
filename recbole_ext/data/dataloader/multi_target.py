"""Batch transform of MA-GNN (Ma et al., AAAI 2020).

``MultiTargetTransform`` adds to every batch the short-term window L (the last ``window_length``
inputs), the earlier history H (at most ``history_length`` items before the window), and, for
training batches, the ``target_length`` targets that follow the window inside the training part of
the user's sequence, each with one uniform negative outside the user's training items. Windows and
histories are right-aligned (the most recent item in the last column) and padded with item 0.

The examples, split and evaluation (the paper's set evaluation is ``eval_protocol: magnn``,
alias ``paper``) are those of :mod:`recbole_ext.data.protocol`, shared with every other model.
"""

import torch
from recbole.data.interaction import Interaction

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
        new_fields[WINDOW_FIELD], new_fields[HISTORY_FIELD] = window_and_history(
            interaction[self.item_seq_field], interaction[self.item_length_field],
            self.window_length, self.history_length,
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
