"""DGSR's cost beside SASRec: seconds per epoch, examples/s, peak RSS and the share of sampling.

One run measures, on the same data, embedding size, prefix length and batch size, SASRec and DGSR
at each requested depth L (n = ``--neighbors`` for every node, the yaml's neighbour cap and time
window, the paper's GRU). Each (model, dataset, L) runs in its own process, so that its peak RSS
(``ru_maxrss``) is its own. A training step is: take the next batch from RecBole's train loader
(DGSR's sub-graphs are sampled there, by the batch transform), move it to the device, forward,
backward, Adam step. The loader runs in the training process (``worker: 0``) so that the sampling
share can be timed; s/epoch is the mean step time over ``--batches`` timed steps (after 2 warm-up
steps) times the number of batches per epoch, the same rule for both models.

    OMP_NUM_THREADS=1 python benchmarks/bench_dgsr.py                       # synthetic and ml-100k, L = 2 and 3
    python benchmarks/bench_dgsr.py --datasets synthetic --batches 5         # quick
    python benchmarks/bench_dgsr.py --device cuda                            # the same figures on a GPU

Writes the table to ``--output`` (default benchmarks/DGSR_BENCH.md) and prints it.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(model, dataset, args, n_layers, window="user"):
    import recbole

    from recbole_ext.config import Config

    config_dict = {
        "embedding_size": args.dim,
        "hidden_size": args.dim,
        "inner_size": 4 * args.dim,
        "n_heads": 2,
        "MAX_ITEM_LIST_LENGTH": args.neighbors,  # DGSR's n follows it: every node keeps n edges
        "train_batch_size": args.batch_size,
        "eval_batch_size": 4096,
        "worker": 0,
        "use_gpu": args.device == "cuda",
        "device": args.device,
        "state": "ERROR",
        "show_progress": False,
        "seed": 2020,
        "reproducibility": True,
    }
    if model == "DGSR":
        config_dict.update(n_layers=n_layers, local_mode="gru", max_neighbors=None, time_window=window)
    else:
        config_dict.update(n_layers=2, loss_type="CE", train_neg_sample_args=None)
    if dataset == "ml-100k":
        config_dict["data_path"] = os.path.join(os.path.dirname(recbole.__file__), "dataset_example") + os.sep
    return Config(model, dataset, config_dict=config_dict, read_command_line=False)


def measure(model_name, dataset_name, n_layers, window, args):
    """One (model, dataset, L) in this process; returns its figures."""
    import torch

    sys.path.insert(0, REPO_ROOT)
    import recbole_ext  # noqa: F401  (compat shims first)
    from recbole.utils import init_seed

    from recbole_ext import registry
    from recbole_ext.data import create_dataset, data_preparation

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = _config(model_name, dataset_name, args, n_layers, window)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    device = torch.device(args.device)
    model = registry.get_model(model_name)(config, train._dataset).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batches = iter(train)
    sampling = stepping = 0.0
    examples = 0
    timed = 0
    for step in range(args.batches + 2):
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            break
        sampled = time.perf_counter()
        batch = batch.to(device)
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync()
        done = time.perf_counter()
        if step >= 2:  # warm-up steps are not timed
            sampling += sampled - start
            stepping += done - sampled
            examples += len(batch)
            timed += 1
    step_seconds = (sampling + stepping) / max(timed, 1)
    figures = {
        "model": model_name,
        "dataset": dataset_name,
        "n_layers": n_layers if model_name == "DGSR" else 2,
        "time_window": window if model_name == "DGSR" else "-",
        "batches_per_epoch": len(train),
        "timed_batches": timed,
        "s_per_step": step_seconds,
        "s_per_epoch": step_seconds * len(train),
        "examples_per_s": examples / max(sampling + stepping, 1e-9),
        "sampling_share": sampling / max(sampling + stepping, 1e-9),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_data_mib": rss_start / 1024,
        "training_examples": len(train.dataset),
    }
    if device.type == "cuda":
        figures["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if model_name == "DGSR":
        fields = {k: batch[k] for k in batch.columns if k.startswith("dgsr_")}
        figures["edges_per_example"] = float(
            ((fields["dgsr_user_nbr_order"] >= 0).sum() + (fields["dgsr_item_nbr_order"] >= 0).sum()) / len(batch)
        )
        figures["expanded_user_rows_per_example"] = float((fields["dgsr_user_nbr_order"] >= 0).any(-1).sum() / len(batch))
    return figures


def _run_child(model, dataset, n_layers, window, args):
    command = [sys.executable, os.path.abspath(__file__), "--child", model, dataset, str(n_layers), window,
               "--dim", str(args.dim), "--neighbors", str(args.neighbors), "--batch-size", str(args.batch_size),
               "--batches", str(args.batches), "--device", args.device]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=args.workdir)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise RuntimeError(f"{model} on {dataset} (L={n_layers}) failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def _table(rows, args, started, finished, load_start, load_end):
    out = [
        "# DGSR beside SASRec: cost per epoch",
        "",
        "Written by `benchmarks/bench_dgsr.py`; nothing in this file is typed by hand.",
        "",
        f"- command: `{' '.join(['python', 'benchmarks/bench_dgsr.py', *sys.argv[1:]])}`",
        f"- date: {started} to {finished} UTC; device: {args.device}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; machine: {platform.machine()}, "
        f"{os.cpu_count()} logical CPUs, **shared with other jobs** (load average {load_start} at the start, "
        f"{load_end} at the end): absolute times are inflated, compare the ratios, which come from this one run",
        f"- shared setting: embedding/hidden size {args.dim}, MAX_ITEM_LIST_LENGTH = DGSR's n = {args.neighbors}, "
        f"train batch {args.batch_size}, Adam lr 1e-3, seed 2020; SASRec: 2 layers, 2 heads, inner size {4 * args.dim}, CE; "
        "DGSR: the yaml's defaults otherwise (GRU local part, neighbour_cap, time_window, strict graph)",
        f"- s/epoch = mean wall time of a training step (next batch, incl. DGSR's sub-graph sampling, + forward, "
        f"backward, Adam) over {args.batches} timed steps after 2 warm-up steps, times the batches per epoch; "
        "examples/s over the same steps; peak RSS = the measuring process's ru_maxrss (one process per row); "
        "sampling = share of the step spent getting the batch from the loader",
        "",
        "| dataset | model | L | time_window | s/epoch | x SASRec | examples/s | peak RSS MiB | x SASRec RSS | sampling share | edges/example |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = next(r for r in rows if r["dataset"] == row["dataset"] and r["model"] == "SASRec")
        edges = f"{row['edges_per_example']:.0f}" if "edges_per_example" in row else "-"
        out.append(
            f"| {row['dataset']} | {row['model']} | {row['n_layers']} | {row['time_window']} | {row['s_per_epoch']:.1f} | "
            f"{row['s_per_epoch'] / base['s_per_epoch']:.2f} | {row['examples_per_s']:,.0f} | {row['peak_rss_mib']:,.0f} | "
            f"{row['peak_rss_mib'] / base['peak_rss_mib']:.2f} | {row['sampling_share']:.0%} | {edges} |"
        )
    out.append("")
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        dgsr = {r["n_layers"]: r for r in rows if r["dataset"] == dataset and r["model"] == "DGSR" and r["time_window"] == "user"}
        if 2 in dgsr and 3 in dgsr:
            out.append(f"- {dataset}: DGSR L = 3 / L = 2 seconds per epoch (default time window) = {dgsr[3]['s_per_epoch'] / dgsr[2]['s_per_epoch']:.2f}x")
    out += ["", "Raw figures:", "", "```json", json.dumps(rows, indent=1), "```", ""]
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "ml-100k"])
    parser.add_argument("--layers", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--neighbors", type=int, default=50, help="n for every node (= MAX_ITEM_LIST_LENGTH of both models)")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=15, help="timed training steps per row")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "benchmarks", "DGSR_BENCH.md"))
    parser.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp"), help="RecBole's log/ and saved/ go here")
    parser.add_argument("--no-all-window", action="store_true",
                        help="skip the extra DGSR row with time_window 'all' (every edge before t) at the first L")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "DATASET", "L", "WINDOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, dataset, n_layers, window = args.child
        print(json.dumps(measure(model, dataset, int(n_layers), window, args)), flush=True)
        return
    started, load_start = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = []
    for dataset in args.datasets:
        runs = [("SASRec", 2, "user")] + [("DGSR", L, "user") for L in args.layers]
        if not args.no_all_window:
            runs.append(("DGSR", args.layers[0], "all"))
        for model, n_layers, window in runs:
            row = _run_child(model, dataset, n_layers, window, args)
            rows.append(row)
            print(f"[{dataset}] {model} L={row['n_layers']} window={row['time_window']}: {row['s_per_epoch']:.1f} s/epoch, "
                  f"{row['examples_per_s']:,.0f} ex/s, peak RSS {row['peak_rss_mib']:,.0f} MiB, "
                  f"sampling {row['sampling_share']:.0%}", flush=True)
    finished, load_end = time.strftime("%H:%M", time.gmtime()), " ".join(f"{x:.1f}" for x in os.getloadavg())
    text = _table(rows, args, started, finished, load_start, load_end)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
