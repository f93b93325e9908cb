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
changed (the observed replacement rate is beta).

Labels never enter the inputs. The item pools (``query2item[context query]``, the similar items,
and the uniform fallback) would hold the example's own target far above chance: the target's
context query is usually the last input item's. So a replaced item is never the example's target
and, with ``train_positions: all``, never the label of its own or of a later position (an item
later in the sequence); these are removed from every pool before the draw (vectorised, see
:func:`draw_excluding`). A query's mixture pool is keyed on the item clicked right after it; that
item is a label when the query is the last input event (the target: no pool, uniform fallback)
and, with ``train_positions: all``, whenever it is an item (the label of the query's position):
then the key is the latest input item before the query instead, which no position at or after
the query is trained to predict.
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
    try:
        value = config[key]
    except KeyError:  # a plain dict (RecBole's Config answers None)
        value = None
    return default if value is None else value


def draw_uniform_excluding(universe, current, uniform):
    """A uniform draw from the sorted ``universe`` other than ``current`` (vectorised)."""
    start = torch.zeros_like(current)
    degree = torch.full_like(current, len(universe))
    return draw_excluding(universe, start, degree, start, current.unsqueeze(1), uniform)[0]


def segment_keys(ptr, idx):
    """Globally sorted int64 keys ``node * stride + value`` of a CSR adjacency whose neighbour
    lists are sorted (``csr_from_pairs``), and the stride: one ``searchsorted`` then finds a value
    inside any node's list."""
    stride = int(idx.max()) + 1 if len(idx) else 1
    nodes = torch.repeat_interleave(torch.arange(len(ptr) - 1), ptr[1:] - ptr[:-1])
    return nodes * stride + idx, stride


def draw_excluding(keys, start, degree, row_key, excluded, uniform):
    """One uniform draw per row from the sorted, distinct segment ``keys[start:start+degree]``
    (values ``keys - row_key``), never one of the row's ``excluded`` values ``[n, K]``
    (entries <= 0 are ignored). Vectorised over the rows; the loop runs over the K columns.

    Returns ``(draw, has_choice)``: rows whose segment holds nothing but excluded values get 0
    and ``has_choice`` False."""
    n = len(start)
    if len(keys) == 0 or n == 0:
        return torch.zeros_like(start), torch.zeros(n, dtype=torch.bool)
    wanted = row_key.unsqueeze(1) + excluded
    position = torch.searchsorted(keys, wanted)
    inside = (excluded > 0) & (position < (start + degree).unsqueeze(1))
    inside &= keys[position.clamp(max=len(keys) - 1)] == wanted
    never = torch.iinfo(torch.long).max
    relative = torch.sort(torch.where(inside, position - start.unsqueeze(1), never), dim=1).values
    repeated = torch.zeros_like(inside)
    repeated[:, 1:] = relative[:, 1:] == relative[:, :-1]
    relative = relative.masked_fill(repeated, never)
    choices = degree - (relative < never).sum(1)
    offset = torch.clamp((uniform * choices).long(), max=torch.clamp(choices - 1, min=0))
    for column in range(relative.size(1)):  # skip the excluded slots, in increasing order
        offset = offset + (offset >= relative[:, column]).long()
    has_choice = choices > 0
    draw = keys[torch.clamp(start + offset, max=len(keys) - 1)] - row_key
    return torch.where(has_choice, draw, torch.zeros_like(draw)), has_choice


def previous_items(items, event_type):
    """For each position, the latest item event strictly before it (0 if none)."""
    positions = torch.arange(items.size(1), device=items.device).expand_as(items)
    latest = torch.where(event_type == EVENT_ITEM, positions, -1).cummax(dim=1).values
    before = torch.full_like(latest, -1)
    before[:, 1:] = latest[:, :-1]
    return torch.where(before >= 0, items.gather(1, before.clamp(min=0)), 0)


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
        self.all_positions = _config_value(config, "train_positions", "last") == "all"
        self.target_field = _config_value(config, "ITEM_ID_FIELD", "item_id")
        # The augmentation rewrites the heterogeneous event sequence only; the other query
        # fusions and the query-free ablation read item_id_list and are not augmented (the paper
        # compares them without augmentation too, Tables 3-4).
        uses_events = (_config_value(config, "use_queries", True)
                       and _config_value(config, "query_fusion", "heterogeneous")
                       in ("heterogeneous", "gated"))
        # Only training batches are trimmed: RecBole's uniN evaluation concatenates per-user
        # transformed pieces, which must keep one width.
        self.trims = uses_events and phase == "train"
        self.active = phase == "train" and self.augmentation != "none" and uses_events
        if self.active:
            self.graph = dataset.query_item_graph
            self.keys = {name: segment_keys(self.graph[f"{name}_ptr"], self.graph[f"{name}_idx"])
                         for name in ("item_sim", "query_sim", "query2item", "item2query")}

    def __call__(self, dataset, interaction):
        if self.trims:
            interaction = trim_event_padding(interaction)
        if not self.active:
            return interaction
        event_type = interaction[EVENT_TYPE_FIELD]
        labels = interaction[EVENT_ITEM_FIELD]
        items, queries = labels.clone(), interaction[EVENT_QUERY_FIELD].clone()
        context = interaction[EVENT_CONTEXT_FIELD]
        # the item clicked right after each event, if that event is in the input
        next_item = torch.zeros_like(items)
        next_item[:, :-1] = torch.where(event_type[:, 1:] == EVENT_ITEM, items[:, 1:], 0)
        next_item[torch.arange(len(items)), torch.clamp(interaction[EVENT_LENGTH_FIELD] - 1,
                                                         min=0)] = 0
        # with train_positions all that item is the label of the query's position: key on the
        # item before the query instead (module doc)
        query_key = previous_items(items, event_type) if self.all_positions else next_item

        pick_item = (event_type == EVENT_ITEM) & (torch.rand(items.shape) < self.beta_item)
        pick_query = (event_type == EVENT_QUERY) & (torch.rand(items.shape) < self.beta_query)
        graph = self.graph
        if pick_item.any() and len(graph["item_nodes"]):
            items[pick_item] = self._replace(
                items[pick_item], context[pick_item], graph["item_nodes"], "item_sim",
                "query2item", self._item_labels(labels, interaction[self.target_field], pick_item))
        if pick_query.any() and len(graph["query_nodes"]):
            queries[pick_query] = self._replace(
                queries[pick_query], query_key[pick_query], graph["query_nodes"], "query_sim",
                "item2query", torch.zeros_like(queries[pick_query]).unsqueeze(1))
        # the un-replaced events are the labels of inner positions (items is a clone)
        interaction[EVENT_ITEM_LABEL_FIELD] = labels
        interaction[EVENT_ITEM_FIELD] = items
        interaction[EVENT_QUERY_FIELD] = queries
        return interaction

    def _item_labels(self, items, target, picked):
        """``[n_picked, K]``: the labels a replaced item must not be: the example's target and,
        with ``train_positions: all``, every item after the replaced position (the labels of it
        and of the later positions)."""
        rows, positions = picked.nonzero(as_tuple=True)
        labels = target[rows].unsqueeze(1)
        if not self.all_positions:
            return labels
        later = torch.arange(items.size(1), device=items.device).unsqueeze(0) > positions.unsqueeze(1)
        return torch.cat([labels, items[rows] * later], dim=1)

    def _replace(self, current, mix_key, universe, sim_name, mix_name, labels):
        """Replacements of the nodes ``current``; never one of ``labels`` ``[n, K]`` (module doc)."""
        n = len(current)
        zeros = torch.zeros_like(current)
        fallback, _ = draw_excluding(universe, zeros, torch.full_like(current, len(universe)),
                                     zeros, torch.cat([current.unsqueeze(1), labels], 1),
                                     torch.rand(n))
        if self.augmentation == "uniform":
            return fallback
        if self.form == "rho":
            # rho-ratio sampling written as an exact mixture: with probability g draw from the
            # similar set S, else uniformly from the other N-1 nodes; g is chosen so that a
            # similar node is rho times as likely as a dissimilar one.
            pooled, has_pool = self._draw_pool(sim_name, current, labels, torch.rand(n))
            size = (self.graph[f"{sim_name}_ptr"][current + 1]
                    - self.graph[f"{sim_name}_ptr"][current]).double()
            others = torch.clamp(torch.tensor(float(len(universe) - 1)), min=1.0)
            weight = (self.rho - 1.0) * size
            pool_prob = weight / (others + weight)
        else:
            pooled, has_pool = self._draw_pool(mix_name, mix_key, labels, torch.rand(n))
            pool_prob = torch.full((n,), self.mix, dtype=torch.double)
        use_pool = has_pool & (torch.rand(n, dtype=torch.double) < pool_prob)
        return torch.where(use_pool, pooled, fallback)

    def _draw_pool(self, name, nodes, labels, uniform):
        """A uniform draw from the neighbour list of each node in the CSR ``name``, without the
        labels; nodes with no pool (0, or every neighbour a label) get ``has_pool`` False."""
        keys, stride = self.keys[name]
        ptr = self.graph[f"{name}_ptr"]
        return draw_excluding(keys, ptr[nodes], ptr[nodes + 1] - ptr[nodes], nodes * stride,
                              labels, uniform)
