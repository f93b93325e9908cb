"""EMBSR building blocks against hand-computed cases and straightforward references (no training)."""

import itertools

import pandas as pd
import torch

from recbole_ext.data.dataloader.multigraph import (
    bound_micro_behaviours,
    build_micro_sequence,
    build_multigraph,
    dyadic_pair_ids,
    left_align_runs,
)
from recbole_ext.data.dataset.base import merge_micro_behaviours

# The paper's Fig. 3 session: items v1..v4, operations o1..o3, micro-behaviours in time order.
FIG3_MICRO = [(1, 1), (2, 1), (3, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 1)]


def _fig3_batch(max_len=8, max_run=4):
    frame = pd.DataFrame(
        {
            "user_id": [1] * len(FIG3_MICRO),
            "item_id": [item for item, _ in FIG3_MICRO],
            "timestamp": list(range(len(FIG3_MICRO))),
            "op": [op for _, op in FIG3_MICRO],
        }
    )
    macro, longest = merge_micro_behaviours(frame, "user_id", "item_id", "timestamp", "op", None, max_run)
    items = torch.zeros(1, max_len, dtype=torch.long)
    runs = torch.zeros(1, max_len, max_run, dtype=torch.long)
    items[0, : len(macro)] = torch.tensor(macro["item_id"].to_numpy())
    for k, run in enumerate(macro["op"]):  # test-side construction of the padded batch
        runs[0, k, : len(run)] = torch.tensor(list(run))
    return macro, longest, items, runs, torch.tensor([len(macro)])


def test_fig3_macro_sequence_and_operation_runs():
    macro, longest, _, _, _ = _fig3_batch()
    assert macro["item_id"].tolist() == [1, 2, 3, 2, 3, 4]  # S^v = {v1, v2, v3, v2, v3, v4}
    assert [list(run) for run in macro["op"]] == [[1], [1], [1], [1, 2], [1, 2, 3], [1]]
    assert longest == 3


def test_fig3_multigraph_edges_as_drawn():
    _, _, items, runs, length = _fig3_batch()
    node_items, alias, num_nodes = build_multigraph(items, length)
    assert num_nodes.tolist() == [4]
    assert node_items[0, :4].tolist() == [1, 2, 3, 4]
    n = int(length)
    edges = [(int(node_items[0, alias[0, k]]), int(node_items[0, alias[0, k + 1]])) for k in range(n - 1)]
    # ordered edges, the repeated transition v2 -> v3 kept twice
    assert edges == [(1, 2), (2, 3), (3, 2), (2, 3), (3, 4)]
    op_runs, run_length = left_align_runs(runs)
    micro_macro, micro_op, micro_length = build_micro_sequence(op_runs, run_length, length)
    assert int(micro_length) == len(FIG3_MICRO)
    micro_items = items[0, micro_macro[0, : len(FIG3_MICRO)]].tolist()
    assert list(zip(micro_items, micro_op[0, : len(FIG3_MICRO)].tolist())) == FIG3_MICRO


def _reference_graph(items, length):
    """Per-example loops: nodes in order of first occurrence and the edge list."""
    result = []
    for row, n in zip(items.tolist(), length.tolist()):
        nodes = []
        for item in row[:n]:
            if item not in nodes:
                nodes.append(item)
        edges = [(nodes.index(row[k]), nodes.index(row[k + 1])) for k in range(n - 1)]
        result.append((nodes, edges))
    return result


def _random_sessions(seed, batch, n_items, max_len=9, max_run=3):
    """Right-padded macro items and operation runs with gaps (zeros inside runs)."""
    generator = torch.Generator().manual_seed(seed)
    length = torch.randint(1, max_len + 1, (batch,), generator=generator)
    items = torch.randint(1, n_items, (batch, max_len), generator=generator)
    items[torch.arange(max_len).unsqueeze(0) >= length.unsqueeze(1)] = 0
    runs = torch.randint(0, 4, (batch, max_len, max_run), generator=generator)  # gaps: tests left alignment
    runs[items == 0] = 0
    return items, runs, length


def test_vectorised_graph_and_micro_sequence_equal_loop_reference():
    items, runs, length = _random_sessions(0, 32, 5)
    node_items, alias, num_nodes = build_multigraph(items, length)
    op_runs, run_length = left_align_runs(runs)
    micro_macro, micro_op, micro_length = build_micro_sequence(op_runs, run_length, length)
    for b, (nodes, edges) in enumerate(_reference_graph(items, length)):
        n = int(length[b])
        assert node_items[b, : len(nodes)].tolist() == nodes and int(num_nodes[b]) == len(nodes)
        assert node_items[b, len(nodes) :].eq(0).all()
        assert [(int(alias[b, k]), int(alias[b, k + 1])) for k in range(n - 1)] == edges
        expected = []
        for k in range(n):
            ops = [op for op in runs[b, k].tolist() if op > 0] or [0]  # empty run -> one unknown op
            expected += [(k, op) for op in ops]
        assert int(micro_length[b]) == len(expected)
        got = list(zip(micro_macro[b, : len(expected)].tolist(), micro_op[b, : len(expected)].tolist()))
        assert got == expected


def test_dyadic_ids_equal_reference_matrix():
    num_ops = 4
    ops = torch.tensor([[2, 4, 1, 3, 0, 0]])
    matrix = dyadic_pair_ids(ops.unsqueeze(2), ops.unsqueeze(1), num_ops)
    pairs = list(itertools.product(range(1, num_ops + 1), repeat=2))
    for i, j in itertools.product(range(6), repeat=2):
        a, b = int(ops[0, i]), int(ops[0, j])
        expected = 0 if a == 0 or b == 0 else pairs.index((a, b)) + 1  # r(a, b) = (a-1)|O| + b
        assert int(matrix[0, i, j]) == expected
    # every ordered pair of real operations has its own id in 1..|O|^2
    all_ids = dyadic_pair_ids(torch.arange(1, 5).unsqueeze(1), torch.arange(1, 5).unsqueeze(0), num_ops)
    assert sorted(all_ids.flatten().tolist()) == list(range(1, num_ops**2 + 1))


def _micro_behaviours(items, runs, length):
    """Reference: per example, the (item, op) micro-behaviours in time order (empty run -> op 0)."""
    result = []
    for row, row_runs, n in zip(items.tolist(), runs.tolist(), length.tolist()):
        sequence = []
        for item, run in zip(row[:n], row_runs[:n]):
            sequence += [(item, op) for op in run if op > 0] or [(item, 0)]
        result.append(sequence)
    return result


def test_fig3_bound_keeps_the_last_micro_behaviours_and_cuts_the_earliest_run():
    _, _, items, runs, length = _fig3_batch()
    op_runs, run_length = left_align_runs(runs)
    # the last 3 of the 9 micro-behaviours: v3's run (o1, o2, o3) cut to (o2, o3), then v4
    bounded = bound_micro_behaviours(items, length, op_runs, run_length, bound=3)
    new_items, new_length, new_runs, new_run_length = bounded
    assert new_length.tolist() == [2]
    assert new_items[0].tolist() == [3, 4, 0, 0, 0, 0, 0, 0]
    assert new_runs[0, :2].tolist() == [[2, 3, 0, 0], [1, 0, 0, 0]] and new_run_length[0, :2].tolist() == [2, 1]
    assert new_runs[0, 2:].eq(0).all() and new_run_length[0, 2:].eq(0).all()
    # a bound at least as long as the input changes nothing
    unchanged = bound_micro_behaviours(items, length, op_runs, run_length, bound=9)
    for got, expected in zip(unchanged, (items, length, op_runs, run_length)):
        assert torch.equal(got, expected)


def test_vectorised_bound_equals_the_last_micro_behaviours_of_the_reference():
    batch = 64
    items, runs, length = _random_sessions(1, batch, 6)
    op_runs, run_length = left_align_runs(runs)
    full = _micro_behaviours(items, op_runs, length)
    for bound in (1, 2, 5, 11):
        new_items, new_length, new_runs, new_run_length = bound_micro_behaviours(
            items, length, op_runs, run_length, bound
        )
        got = _micro_behaviours(new_items, new_runs, new_length)
        micro_length = build_micro_sequence(new_runs, new_run_length, new_length)[2]
        for b in range(batch):
            assert len(got[b]) <= bound and int(micro_length[b]) == len(got[b])
            # the last `bound` micro-behaviours, except that a cut run never becomes an empty one
            assert got[b] == full[b][-bound:], (bound, b)
        assert any(len(sequence) > bound for sequence in full)  # the bound did bind
