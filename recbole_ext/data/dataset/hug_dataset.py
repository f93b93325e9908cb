"""Dataset plugin of HUGT: SVD item factors of the training split.

Reference:
    Shui, Liu, Deoras, Karypis. "Sequence-Graph Duality: Unifying User Modeling with
    Self-Attention for Sequential Recommendation" (HUGT), NeurIPS 2022 GLFrontiers workshop.

HUGT links each item of a user's sequence to its most similar predecessors, with cosine
similarity between item vectors from a truncated SVD of the binary user x item matrix
(paper section 3). The factors are computed here, once, from the **training split only**, and
stored on this dataset and on each split copy (the model reads ``dataset.svd_item_factors`` of
the training copy RecBole hands it).

With ``train_windows: tiled`` (the paper's protocol) the training split keeps, per user, only
the prefixes that end every ``MAX_ITEM_LIST_LENGTH`` targets counted back from the user's last
training target, so that an all-position loss sees every training target exactly once.
Validation and test examples are always RecBole's.
"""

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds

from recbole_ext.data.dataset.base import ExtSequentialDataset

TRAIN_WINDOW_CHOICES = ("prefixes", "tiled")


def binary_user_item_matrix(user_ids, item_lists, target_items, n_users, n_items):
    """Binary user x item CSR matrix of the items a set of examples holds.

    Args:
        user_ids (np.ndarray): ``[N]`` user of each example.
        item_lists (np.ndarray): ``[N, L]`` input items of each example, 0 = padding.
        target_items (np.ndarray): ``[N]`` target item of each example.

    Every interaction of a split is the target of one of its examples, except each user's
    first item, which only appears in input lists; so targets plus inputs cover the split.
    """
    list_users = np.repeat(user_ids, item_lists.shape[1])
    list_items = item_lists.reshape(-1)
    present = list_items > 0
    rows = np.concatenate([user_ids, list_users[present]])
    cols = np.concatenate([target_items, list_items[present]])
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # repeated consumption still counts once: the matrix is binary
    return matrix


def svd_item_factors(matrix, rank):
    """L2-normalised item factors ``[n_items, rank']`` of a truncated SVD of ``matrix``.

    The factors are ``V * sigma``: their inner products equal those of the item columns of the
    best rank-``rank`` approximation of ``matrix``, so their cosine is that approximation's
    item-item cosine. Items without any interaction (padding 0, items seen only in evaluation)
    get a zero vector. ``rank`` is capped at ``min(matrix.shape) - 1`` (an ARPACK limit).
    The start vector is fixed so that the result is deterministic.
    """
    effective_rank = int(min(rank, min(matrix.shape) - 1))
    if effective_rank < 1:
        raise ValueError(
            f"svd_rank: the training matrix {matrix.shape} is too small for a truncated SVD"
        )
    start_vector = np.full(min(matrix.shape), 1.0 / np.sqrt(min(matrix.shape)))
    _, singular_values, vt = svds(
        matrix.astype(np.float64), k=effective_rank, v0=start_vector, rng=np.random.default_rng(0)
    )
    factors = vt.T * singular_values
    # A singular vector's sign is arbitrary: fix it (largest entry positive) for reproducibility.
    largest = np.abs(factors).argmax(axis=0)
    factors *= np.where(factors[largest, np.arange(factors.shape[1])] < 0, -1.0, 1.0)
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    factors = np.divide(factors, norms, out=np.zeros_like(factors), where=norms > 1e-12)
    return torch.from_numpy(factors.astype(np.float32))


def tiled_window_mask(user_ids, window):
    """Boolean mask keeping every ``window``-th example per user, counted back from the last.

    ``user_ids`` lists the examples of a split in time order within each user (RecBole's
    order). The kept prefixes cut each user's training targets into disjoint windows.
    """
    user_ids = np.asarray(user_ids)
    order = np.argsort(user_ids, kind="stable")
    sorted_users = user_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(sorted_users)])
    rank_in_user = np.arange(len(sorted_users)) - np.repeat(starts, sizes)
    rank_from_last = np.repeat(sizes, sizes) - 1 - rank_in_user
    keep = np.empty(len(user_ids), dtype=bool)
    keep[order] = rank_from_last % window == 0
    return keep


class HUGDataset(ExtSequentialDataset):
    """``ExtSequentialDataset`` plus ``svd_item_factors`` (``[n_items, rank]``, L2-normalised)."""

    def __init__(self, config):
        self.svd_rank = config["svd_rank"] if config["svd_rank"] is not None else 64
        self.train_windows = config["train_windows"] or "prefixes"
        if not isinstance(self.svd_rank, int) or self.svd_rank < 1:
            raise ValueError(f"svd_rank must be a positive integer, got {self.svd_rank!r}")
        if self.train_windows not in TRAIN_WINDOW_CHOICES:
            raise ValueError(
                f"train_windows must be one of {TRAIN_WINDOW_CHOICES}, got {self.train_windows!r}"
            )
        self.svd_item_factors = None
        super().__init__(config)

    def build(self):
        datasets = super().build()
        train = datasets[0]
        self.svd_item_factors = self.compute_svd_item_factors(train)
        if self.train_windows == "tiled":
            keep = tiled_window_mask(
                train.inter_feat[self.uid_field].numpy(), self.max_item_list_len
            )
            datasets[0] = train.copy(train.inter_feat[torch.from_numpy(keep)])
        # Split copies were made before the factors existed (copy.copy is shallow).
        for split in datasets:
            split.svd_item_factors = self.svd_item_factors
        return datasets

    def compute_svd_item_factors(self, train):
        """SVD item factors of the binary user x item matrix of ``train`` only."""
        feat = train.inter_feat
        matrix = binary_user_item_matrix(
            feat[self.uid_field].numpy(),
            feat[self.item_id_list_field].numpy(),
            feat[self.iid_field].numpy(),
            self.user_num,
            self.item_num,
        )
        return svd_item_factors(matrix, self.svd_rank)
