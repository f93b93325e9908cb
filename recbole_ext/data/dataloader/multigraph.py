"""EMBSR's per-batch inputs: the session multigraph, the micro-behaviour sequence, the star node's
operation and the dyadic operation-pair ids (Yuan et al., "Micro-behavior Encoding for
Session-based Recommendation", ICDE 2022, Sec. IV-B.1 and IV-C.1).

Everything is computed on whole padded batches with tensor operations: no Python loop runs over
examples, nodes or edges. Shapes are fixed by the dataset (``L = MAX_ITEM_LIST_LENGTH``,
``R = max_operation_run``), not by the batch, so batches built separately can be concatenated
(RecBole's negative-sampling evaluation does that); the model trims the padding it does not need.

Fields added to each batch (``B`` examples):

* ``mg_node_items`` ``[B, L]``: the distinct items of the macro sequence in order of first
  occurrence (the multigraph's satellite nodes), 0-padded; ``mg_num_nodes`` ``[B]``.
* ``mg_alias`` ``[B, L]``: the node index of every macro position (0 on padding).
  Edge ``k`` of the multigraph is ``mg_alias[:, k] -> mg_alias[:, k+1]`` for ``k < length-1``:
  one ordered edge per macro transition, repeated transitions kept as separate edges.
* ``mg_op_runs`` ``[B, L, R]`` / ``mg_run_length`` ``[B, L]``: each macro item's operation run,
  left-aligned, and its length (input of the operation GRU).
* ``mg_micro_macro`` / ``mg_micro_op`` ``[B, L*R]``, ``mg_micro_length`` ``[B]``: the flattened
  micro-behaviour sequence (which macro position each micro-behaviour belongs to, and its op).
* ``mg_star_op`` ``[B]``: the star node's operation: the learned "next operation" id
  (``star_op: next``, leak-free) or the first operation on the target item (``star_op: target``,
  the paper's setting, which reads the target's own micro-behaviour).
* ``mg_star_pairs`` ``[B, 1 + L*R]``: dyadic ids ``r(star op, o_j)``; index 0 is the star's pair
  with itself, then one per micro-behaviour. Only the star row of the relation matrix is built:
  the model reads the attention output of the star only, so the other rows are never used.

With ``input_bound: micro_behaviours`` the input is first cut to its last
``max_micro_behaviours`` micro-behaviours (the paper's T_max; :func:`bound_micro_behaviours`),
``item_id_list`` and ``item_length`` included, before anything above is built.
"""

import torch

from recbole.data.interaction import Interaction

STAR_OP_MODES = ("next", "target")
INPUT_BOUNDS = ("macro_items", "micro_behaviours")


def dyadic_pair_ids(first_ops, second_ops, num_op_values):
    """Index of the ordered operation pair ``(a, b)``: ``(a-1)*K + b`` for ``a, b >= 1``, else 0.

    ``K = num_op_values`` is the number of non-padding operation ids (ids ``1..K``); id 0 is
    padding and any pair with it is the padding pair 0. Broadcasts like ``first_ops * second_ops``.
    """
    pairs = (first_ops - 1) * num_op_values + second_ops
    return torch.where((first_ops > 0) & (second_ops > 0), pairs, torch.zeros_like(pairs))


def left_align_runs(op_runs):
    """Move each run's operations (non-zero ids) to the front, keeping their order.

    Returns ``(runs, lengths)``; a stable sort on "is padding" does the compaction.
    """
    is_pad = (op_runs == 0).to(torch.int8)
    order = torch.sort(is_pad, dim=-1, stable=True).indices
    runs = torch.gather(op_runs, -1, order)
    return runs, (op_runs > 0).sum(-1)


def build_multigraph(item_seq, item_length):
    """Satellite nodes and the node index of every macro position.

    ``item_seq`` is right-padded ``[B, L]``. Returns ``(node_items, alias, num_nodes)``, nodes
    numbered in order of first occurrence.
    """
    batch_size, max_len = item_seq.shape
    positions = torch.arange(max_len, device=item_seq.device)
    is_real = positions.unsqueeze(0) < item_length.unsqueeze(1)
    same_item = item_seq.unsqueeze(2) == item_seq.unsqueeze(1)  # [B, L, L]
    earlier = torch.ones(max_len, max_len, dtype=torch.bool, device=item_seq.device).tril(-1)
    is_first = is_real & ~(same_item & earlier).any(-1)
    node_rank = is_first.long().cumsum(1) - 1
    # argmax returns the first maximal index: the first occurrence of each position's item
    first_position = same_item.to(torch.int8).argmax(-1)
    alias = torch.gather(node_rank, 1, first_position) * is_real
    node_items = torch.zeros_like(item_seq)
    rows = torch.arange(batch_size, device=item_seq.device).unsqueeze(1).expand_as(item_seq)
    node_items[rows[is_first], node_rank[is_first]] = item_seq[is_first]
    return node_items, alias, is_first.sum(1)


def build_micro_sequence(op_runs, run_length, item_length):
    """Flatten the left-aligned operation runs of the real macro items into one sequence per example.

    A real macro item with an empty run (no operation recorded) still yields one micro-behaviour
    with operation 0 (unknown), so that every input item takes part in the attention.
    Returns ``(micro_macro, micro_op, micro_length)`` with ``[B, L*R]`` tensors.
    """
    batch_size, max_len, max_run = op_runs.shape
    device = op_runs.device
    slot = torch.arange(max_run, device=device)
    is_real = torch.arange(max_len, device=device).unsqueeze(0) < item_length.unsqueeze(1)
    effective_length = torch.where(is_real, run_length.clamp(min=1), torch.zeros_like(run_length))
    valid = slot.view(1, 1, -1) < effective_length.unsqueeze(-1)  # [B, L, R]
    valid = valid.reshape(batch_size, -1)
    destination = valid.long().cumsum(1) - 1
    macro_of_slot = torch.arange(max_len, device=device).repeat_interleave(max_run)
    rows = torch.arange(batch_size, device=device).unsqueeze(1).expand_as(valid)
    micro_macro = torch.zeros(batch_size, max_len * max_run, dtype=torch.long, device=device)
    micro_op = torch.zeros_like(micro_macro)
    micro_macro[rows[valid], destination[valid]] = macro_of_slot.expand_as(valid)[valid]
    micro_op[rows[valid], destination[valid]] = op_runs.reshape(batch_size, -1)[valid]
    return micro_macro, micro_op, valid.sum(1)


def bound_micro_behaviours(item_seq, item_length, op_runs, run_length, bound):
    """Keep only the last ``bound`` micro-behaviours of each input (the paper's T_max).

    ``op_runs`` are left-aligned (:func:`left_align_runs`); a real macro item with an empty run
    counts as one micro-behaviour, as in :func:`build_micro_sequence`. Macro items left without
    any micro-behaviour are dropped (the rest move to the front), and the earliest kept macro item
    keeps only the latest operations of its run. Returns ``(item_seq, item_length, op_runs,
    run_length)`` with the input shapes.
    """
    batch_size, max_len, max_run = op_runs.shape
    device = op_runs.device
    positions = torch.arange(max_len, device=device).unsqueeze(0)
    is_real = positions < item_length.unsqueeze(1)
    micro_count = torch.where(is_real, run_length.clamp(min=1), torch.zeros_like(run_length))
    later = micro_count.flip(1).cumsum(1).flip(1) - micro_count  # micro-behaviours after each item
    kept = torch.minimum((bound - later).clamp(min=0), micro_count)
    start = (is_real & (kept == 0)).sum(1)  # the dropped macro items are a prefix
    new_length = item_length - start
    source = (positions + start.unsqueeze(1)).clamp(max=max_len - 1)
    keep = positions < new_length.unsqueeze(1)
    item_seq = torch.gather(item_seq, 1, source) * keep
    kept = torch.gather(kept, 1, source) * keep
    run_length = torch.gather(run_length, 1, source) * keep
    op_runs = torch.gather(op_runs, 1, source.unsqueeze(-1).expand(-1, -1, max_run)) * keep.unsqueeze(-1)
    # a run cut short keeps its latest `kept` operations (slots run_length - kept .. run_length - 1)
    first_kept_slot = (run_length - kept).clamp(min=0)
    op_runs = op_runs * (torch.arange(max_run, device=device) >= first_kept_slot.unsqueeze(-1))
    op_runs, run_length = left_align_runs(op_runs)
    return item_seq, new_length, op_runs, run_length


class MultigraphTransform:
    """Batch transform installed on EMBSR's dataloaders (see the module docstring for the fields)."""

    def __init__(self, config, dataset, phase):
        self.phase = phase
        self.item_seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
        self.length_field = config["ITEM_LIST_LENGTH_FIELD"]
        op_field = config["OPERATION_FIELD"]
        if not op_field:
            raise ValueError(
                "EMBSR needs micro-behaviours: set OPERATION_FIELD (the operation token field of the "
                ".inter file) in the dataset's yaml or the config"
            )
        self.op_list_field = op_field + config["LIST_SUFFIX"]
        self.star_op = config["star_op"]
        if self.star_op not in STAR_OP_MODES:
            raise ValueError(f"star_op must be one of {STAR_OP_MODES}, got {self.star_op!r}")
        # the dataset plugin keeps the target's first operation in this field (see MicroBehaviourDataset)
        self.target_op_field = getattr(dataset, "target_first_op_field", None)
        self.input_bound = config["input_bound"] or "macro_items"
        if self.input_bound not in INPUT_BOUNDS:
            raise ValueError(f"input_bound must be one of {INPUT_BOUNDS}, got {self.input_bound!r}")
        self.max_micro_behaviours = config["max_micro_behaviours"]
        if self.input_bound == "micro_behaviours" and (
            isinstance(self.max_micro_behaviours, bool)
            or not isinstance(self.max_micro_behaviours, int)
            or self.max_micro_behaviours < 1
        ):
            raise ValueError(
                f"max_micro_behaviours must be a positive integer with input_bound: micro_behaviours, "
                f"got {self.max_micro_behaviours!r}"
            )
        self.num_op_values = dataset.num(op_field)  # real ops 1..n-1, plus the "next" id n
        self.next_op_id = self.num_op_values

    def __call__(self, dataset, interaction):
        item_seq = interaction[self.item_seq_field]
        item_length = interaction[self.length_field]
        op_list = interaction[self.op_list_field]
        if op_list.dim() == 2:  # runs of length 1 are stored as a plain token list
            op_list = op_list.unsqueeze(-1)
        op_runs, run_length = left_align_runs(op_list)
        if self.input_bound == "micro_behaviours":
            item_seq, item_length, op_runs, run_length = bound_micro_behaviours(
                item_seq, item_length, op_runs, run_length, self.max_micro_behaviours
            )
            interaction[self.item_seq_field], interaction[self.length_field] = item_seq, item_length
        node_items, alias, num_nodes = build_multigraph(item_seq, item_length)
        micro_macro, micro_op, micro_length = build_micro_sequence(op_runs, run_length, item_length)
        if self.star_op == "target":
            if self.target_op_field is None or self.target_op_field not in interaction:
                raise ValueError("star_op: target needs the MicroBehaviourDataset plugin's target operation field")
            star_op = interaction[self.target_op_field]
        else:
            star_op = torch.full_like(item_length, self.next_op_id)
        star_pairs = dyadic_pair_ids(
            star_op.unsqueeze(1), torch.cat([star_op.unsqueeze(1), micro_op], 1), self.num_op_values
        )
        interaction.update(
            Interaction(
                {
                    "mg_node_items": node_items,
                    "mg_alias": alias,
                    "mg_num_nodes": num_nodes,
                    "mg_op_runs": op_runs,
                    "mg_run_length": run_length,
                    "mg_micro_macro": micro_macro,
                    "mg_micro_op": micro_op,
                    "mg_micro_length": micro_length,
                    "mg_star_op": star_op,
                    "mg_star_pairs": star_pairs,
                }
            )
        )
        return interaction
