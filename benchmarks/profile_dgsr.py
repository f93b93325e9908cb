"""Where a DGSR training step spends its time: sub-graph sampling (the batch transform, run by the
dataloader) against the model's forward and backward pass, per part of the model.

    python benchmarks/profile_dgsr.py [--dataset ml-100k] [--layers 2 3] [--batches 15] [--neighbors 50]
    python benchmarks/profile_dgsr.py --layers 3 --ops 25     # plus torch.profiler's top operators

For each depth L the same batches (the same seed) are timed: the loader's sampling, then the
forward, split into the sub-graph preparation (edge lists) and each layer, and the backward.
The sub-graph's size per layer is printed too: live rows and their edges.
"""

import argparse
import time

import torch

from recbole.utils import init_seed

from recbole_ext import registry
from recbole_ext.config import Config
from recbole_ext.data import create_dataset, data_preparation


def _timed_layers(model, timers):
    """Wrap each DGAN layer's forward so that its wall time is added to ``timers``."""
    for depth, layer in enumerate(model.layers, start=1):
        original = layer.forward

        def timed(*inputs, _original=original, _name=f"layer {depth}"):
            start = time.perf_counter()
            out = _original(*inputs)
            timers[_name] = timers.get(_name, 0.0) + time.perf_counter() - start
            return out

        layer.forward = timed


def _sizes(model, batch):
    """Live rows and their edges per layer (the GRU runs one step per edge)."""
    hops = {kind: batch[f"dgsr_{kind}_hop"].reshape(-1) for kind in ("user", "item")}
    orders = {kind: batch[f"dgsr_{kind}_nbr_order"] for kind in ("user", "item")}
    lines = []
    for depth in range(1, model.n_layers + 1):
        reach = model.n_layers - depth
        parts = []
        for kind in ("user", "item"):
            order = orders[kind]
            row_hop = batch[f"dgsr_{kind}_hop"][:, : order.size(1)]
            lengths = (order >= 0).sum(-1)[(row_hop <= reach) & (row_hop >= 0)]
            parts.append(f"{kind} rows {int(((hops[kind] <= reach) & (hops[kind] >= 0)).sum())}, "
                         f"with edges {int((lengths > 0).sum())}, edges {int(lengths.sum())}")
        lines.append(f"  layer {depth} (reach {reach}): " + "; ".join(parts))
    return lines


def profile(args, n_layers):
    config = Config("DGSR", args.dataset, read_command_line=False, config_dict={
        "use_gpu": False, "state": "ERROR", "embedding_size": args.hidden_size,
        "MAX_ITEM_LIST_LENGTH": args.neighbors, "max_neighbors": None, "n_layers": n_layers,
        "train_batch_size": args.batch_size, "show_progress": False, "local_mode": args.local_mode,
        "worker": 0, "seed": 2020, "reproducibility": True, "time_window": args.time_window,
        **({"data_path": args.data_path} if args.data_path else {}),
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = registry.get_model("DGSR")(config, train_data._dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    timers = {}
    _timed_layers(model, timers)
    batches = iter(train_data)
    for _ in range(2):  # warm-up
        batch = next(batches)
        model.calculate_loss(batch).backward()
    timers.clear()
    totals = {"sampling": 0.0, "forward": 0.0, "backward+step": 0.0}
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if args.ops else None
    if profiler is not None:
        profiler.__enter__()
    for _ in range(args.batches):
        start = time.perf_counter()
        batch = next(batches)  # the SubgraphSampler transform runs here, in the collate function
        sampled = time.perf_counter()
        loss = model.calculate_loss(batch)
        forwarded = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done = time.perf_counter()
        totals["sampling"] += sampled - start
        totals["forward"] += forwarded - sampled
        totals["backward+step"] += done - forwarded
    if profiler is not None:
        profiler.__exit__(None, None, None)
    n = args.batches
    step = sum(totals.values()) / n
    print(f"DGSR on {args.dataset}, L = {n_layers}, local_mode {args.local_mode}, batch {args.batch_size}, "
          f"hidden {args.hidden_size}, n = {args.neighbors}, time_window {args.time_window}: "
          f"{step:.3f} s per step over {n} steps ({len(train_data)} batches per epoch)")
    for name, value in totals.items():
        print(f"  {name:14s} {value / n:.3f} s ({value / n / step:.0%})")
    for name, value in timers.items():
        print(f"  forward {name:7s} {value / n:.3f} s")
    for line in _sizes(model, batch):
        print(line)
    if profiler is not None:
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None, help="RecBole's data_path (ml-100k: its dataset_example)")
    parser.add_argument("--layers", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--neighbors", type=int, default=50, help="MAX_ITEM_LIST_LENGTH = every node's n")
    parser.add_argument("--local_mode", default="gru", choices=["gru", "last_attention"])
    parser.add_argument("--time_window", default="user", choices=["user", "all"])
    parser.add_argument("--hidden_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--ops", type=int, default=0, help="print torch.profiler's top N operators (0: none)")
    args = parser.parse_args()
    if args.dataset == "ml-100k" and args.data_path is None:
        import os

        import recbole

        args.data_path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example") + os.sep
    steps = {L: profile(args, L) for L in args.layers}
    if 2 in steps and 3 in steps:
        print(f"L = 3 / L = 2 step time: {steps[3] / steps[2]:.2f}x")


if __name__ == "__main__":
    main()
