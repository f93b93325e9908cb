"""Layers and helpers shared by two or more extension models.

Model-specific layers stay in their model file; what lives here is used by several models.
"""

from functools import partial

from recbole.model.sequential_recommender.sasrec import SASRec


def init_like_sasrec(model):
    """Initialise ``model`` the way RecBole's SASRec initialises itself (normal(0,
    ``model.initializer_range``) for linear and embedding weights, unit LayerNorms, zero biases).

    Models compared against SASRec then start from the same distribution, and QuerySeqRec without
    queries reproduces SASRec exactly. RecBole's own method is called, not copied.
    """
    model.apply(partial(SASRec._init_weights, model))
