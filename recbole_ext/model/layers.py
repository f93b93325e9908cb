"""Layers and helpers shared by two or more extension models.

Model-specific layers stay in their model file; what lives here is used by several models.
"""

from functools import partial

import torch

from recbole.model.sequential_recommender.sasrec import SASRec


def init_like_sasrec(model):
    """Initialise ``model`` the way RecBole's SASRec initialises itself (normal(0,
    ``model.initializer_range``) for linear and embedding weights, unit LayerNorms, zero biases).

    Models compared against SASRec then start from the same distribution, and QuerySeqRec without
    queries reproduces SASRec exactly. RecBole's own method is called, not copied.
    """
    model.apply(partial(SASRec._init_weights, model))


# ---------------------------------------------------------------- segment operations (edge lists)
# Message passing over an edge list without padding: edge e belongs to segment ``segment[e]``
# (its destination node); plain torch, device-agnostic (index_add_ / scatter_reduce).


def segment_sum(values, segment, num_segments):
    """Sum of ``values`` [E, ...] per segment -> [num_segments, ...]; empty segments are 0."""
    out = values.new_zeros((num_segments, *values.shape[1:]))
    return out.index_add_(0, segment, values)


def segment_softmax(scores, segment, num_segments):
    """Softmax of ``scores`` [E] within each segment (edges of one destination); [E].

    Shifted by the segment maximum for stability, like ``torch.softmax``; a segment's weights sum to 1.
    """
    maximum = scores.new_full((num_segments,), float("-inf"))
    maximum = maximum.scatter_reduce(0, segment, scores.detach(), reduce="amax", include_self=True)
    exp = torch.exp(scores - maximum[segment])
    return exp / segment_sum(exp, segment, num_segments)[segment]
