"""Graph-based sequence augmentation of QuerySeqRec (He et al., CIKM 2022, Sec. 2.2).

A batch transform of the training dataloader, redrawn on every batch of every epoch and
vectorised over the batch. Each input event of the heterogeneous sequence is replaced, with
probability ``beta_item`` (items) or ``beta_query`` (queries), by another node of the same kind.
Labels are never touched: the target item stays, and the item events before replacement are kept
in ``EVENT_ITEM_LABEL_FIELD``, from which ``train_positions: all`` reads the labels of the inner
positions. The query-item graph comes from the training split
only (``QueryAwareDataset.build``).

``augmentation`` selects the ablation of the paper's Table 3:

- ``graph`` (default, "Query-SeqRec"): similar nodes are preferred, in one of two forms
  (``replacement_form``):

  * ``mixture`` (default, the authors' code): with probability ``graph_mix`` draw uniformly from
    the items linked to the item's latest query (for a query: from the queries linked to the item
    clicked right after it), otherwise uniformly from all graph nodes of that kind.
  * ``rho`` (the paper, Eq. 5-6): a node similar to the replaced one (sharing a graph neighbour)
    is drawn ``rho`` times as often as any other graph node of that kind. With ``|S|`` similar
    nodes among ``N``, the similar set is hit with probability (rho-1)|S| / (N-1+(rho-1)|S|),
    which is small on a real catalogue (``|S|`` << ``N``): in the paper's grid rho <= 2 this is
    close to uniform replacement.

- ``uniform`` ("w/ R"): uniform over all graph nodes of that kind.
- ``none`` ("w/o A"): no replacement.

Uniform draws never return the replaced node itself, so an event chosen for replacement is always
changed (the observed replacement rate is beta). A query whose next input event is not an item
(or that is the last input event: the next event is the label) has no mixture pool and falls back
to the uniform draw, which keeps the label out of the input.
"""

import torch

from recbole_ext.data.dataset.query_dataset import (
    EVENT_CONTEXT_FIELD,
    EVENT_ITEM,
    EVENT_ITEM_FIELD,
    EVENT_ITEM_LABEL_FIELD,
    EVENT_LENGTH_FIELD,
    EVENT_QUERY,
    EVENT_QUERY_FIELD,
    EVENT_TYPE_FIELD,
)

AUGMENTATIONS = ("graph", "uniform", "none")
REPLACEMENT_FORMS = ("rho", "mixture")
EVENT_FIELDS = (EVENT_ITEM_FIELD, EVENT_QUERY_FIELD, EVENT_TYPE_FIELD, EVENT_CONTEXT_FIELD)


def _config_value(config, key, default):
    value = config[key]
    return default if value is None else value


def draw_from_pools(nodes, ptr, idx, uniform):
    """One uniform draw per entry of ``nodes`` from its CSR neighbour list ``idx[ptr[n]:ptr[n+1]]``.

    Returns ``(draw, has_pool)``; entries with an empty pool get 0 and ``has_pool`` False.
    ``uniform`` holds one U(0, 1) number per entry."""
    start, degree = ptr[nodes], ptr[nodes + 1] - ptr[nodes]
    offset = torch.clamp((uniform * degree).long(), max=torch.clamp(degree - 1, min=0))
    has_pool = degree > 0
    draw = torch.where(has_pool, idx[torch.clamp(start + offset, max=max(len(idx) - 1, 0))]
                       if len(idx) else torch.zeros_like(nodes), torch.zeros_like(nodes))
    return draw, has_pool


def draw_uniform_excluding(universe, current, uniform):
    """A uniform draw from the sorted ``universe`` other than ``current`` (vectorised)."""
    size = len(universe)
    position = torch.searchsorted(universe, current)
    current_in = (position < size) & (universe[torch.clamp(position, max=size - 1)] == current)
    choices = size - current_in.long()
    offset = torch.clamp((uniform * choices).long(), max=torch.clamp(choices - 1, min=0))
    # skip the current node's own slot
    offset = offset + (current_in & (offset >= position)).long()
    return universe[torch.clamp(offset, max=size - 1)]


def trim_event_padding(interaction):
    """Cut the event columns to the batch's longest sequence: the encoders are causal and
    padding-invariant, so the outputs are unchanged and short batches cost less."""
    width = max(int(interaction[EVENT_LENGTH_FIELD].max()), 1) if len(interaction) else 1
    for field in EVENT_FIELDS:
        if interaction[field].size(1) > width:
            interaction[field] = interaction[field][:, :width]
    return interaction


class QueryGraphAugmentation:
    """The batch transform (see module doc): trims event padding and augments training
    batches; identity on evaluation batches."""

    def __init__(self, config, dataset, phase):
        self.augmentation = _config_value(config, "augmentation", "graph")
        self.form = _config_value(config, "replacement_form", "mixture")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got "
                             f"'{self.augmentation}'")
        if self.form not in REPLACEMENT_FORMS:
            raise ValueError(f"replacement_form must be one of {REPLACEMENT_FORMS}, got "
                             f"'{self.form}'")
        self.beta_item = float(_config_value(config, "beta_item", 0.25))
        self.beta_query = float(_config_value(config, "beta_query", 0.25))
        self.rho = float(_config_value(config, "rho", 1.5))
        self.mix = float(_config_value(config, "graph_mix", 0.2))
        for key, value in (("beta_item", self.beta_item), ("beta_query", self.beta_query),
                           ("graph_mix", self.mix)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {value}")
        if self.rho < 1.0:
            raise ValueError(f"rho must be >= 1, got {self.rho}")
        # The augmentation rewrites the heterogeneous event sequence only; the other query
        # fusions and the query-free ablation read item_id_list and are not augmented (the paper
        # compares them without augmentation too, Tables 3-4).
        uses_events = (_config_value(config, "use_queries", True)
                       and _config_value(config, "query_fusion", "heterogeneous")
                       == "heterogeneous")
        # Only training batches are trimmed: RecBole's uniN evaluation concatenates per-user
        # transformed pieces, which must keep one width.
        self.trims = uses_events and phase == "train"
        self.active = phase == "train" and self.augmentation != "none" and uses_events
        if self.active:
            self.graph = dataset.query_item_graph

    def __call__(self, dataset, interaction):
        if self.trims:
            interaction = trim_event_padding(interaction)
        if not self.active:
            return interaction
        event_type = interaction[EVENT_TYPE_FIELD]
        items = interaction[EVENT_ITEM_FIELD].clone()
        queries = interaction[EVENT_QUERY_FIELD].clone()
        context = interaction[EVENT_CONTEXT_FIELD]
        # the item clicked right after each event, if that event is in the input
        next_item = torch.zeros_like(items)
        next_item[:, :-1] = torch.where(event_type[:, 1:] == EVENT_ITEM, items[:, 1:], 0)
        next_item[torch.arange(len(items)), torch.clamp(interaction[EVENT_LENGTH_FIELD] - 1,
                                                         min=0)] = 0

        pick_item = (event_type == EVENT_ITEM) & (torch.rand(items.shape) < self.beta_item)
        pick_query = (event_type == EVENT_QUERY) & (torch.rand(items.shape) < self.beta_query)
        graph = self.graph
        if pick_item.any() and len(graph["item_nodes"]):
            items[pick_item] = self._replace(
                items[pick_item], context[pick_item], graph["item_nodes"],
                graph["item_sim_ptr"], graph["item_sim_idx"],
                graph["query2item_ptr"], graph["query2item_idx"])
        if pick_query.any() and len(graph["query_nodes"]):
            queries[pick_query] = self._replace(
                queries[pick_query], next_item[pick_query], graph["query_nodes"],
                graph["query_sim_ptr"], graph["query_sim_idx"],
                graph["item2query_ptr"], graph["item2query_idx"])
        # the un-replaced events are the labels of inner positions (items is a clone)
        interaction[EVENT_ITEM_LABEL_FIELD] = interaction[EVENT_ITEM_FIELD]
        interaction[EVENT_ITEM_FIELD] = items
        interaction[EVENT_QUERY_FIELD] = queries
        return interaction

    def _replace(self, current, mix_key, universe, sim_ptr, sim_idx, mix_ptr, mix_idx):
        n = len(current)
        fallback = draw_uniform_excluding(universe, current, torch.rand(n))
        if self.augmentation == "uniform":
            return fallback
        if self.form == "rho":
            # rho-ratio sampling written as an exact mixture: with probability g draw from the
            # similar set S, else uniformly from the other N-1 nodes; g is chosen so that a
            # similar node is rho times as likely as a dissimilar one.
            pooled, has_pool = draw_from_pools(current, sim_ptr, sim_idx, torch.rand(n))
            size = (sim_ptr[current + 1] - sim_ptr[current]).double()
            others = torch.clamp(torch.tensor(float(len(universe) - 1)), min=1.0)
            weight = (self.rho - 1.0) * size
            pool_prob = weight / (others + weight)
        else:
            pooled, has_pool = draw_from_pools(mix_key, mix_ptr, mix_idx, torch.rand(n))
            pool_prob = torch.full((n,), self.mix, dtype=torch.double)
        use_pool = has_pool & (torch.rand(n, dtype=torch.double) < pool_prob)
        return torch.where(use_pool, pooled, fallback)
