"""Where a DGSR training step spends its time: sub-graph sampling (the batch transform, run by the
dataloader) against the model's forward and backward pass.

    python benchmarks/profile_dgsr.py [--dataset ml-100k] [--batches 15] [--local_mode gru]
"""

import argparse
import time

import torch

from recbole_ext import registry
from recbole_ext.config import Config
from recbole_ext.data import create_dataset, data_preparation


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--local_mode", default="gru", choices=["gru", "last_attention"])
    parser.add_argument("--hidden_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()
    config = Config("DGSR", args.dataset, read_command_line=False, config_dict={
        "use_gpu": False, "state": "ERROR", "embedding_size": args.hidden_size, "MAX_ITEM_LIST_LENGTH": 20,
        "train_batch_size": args.batch_size, "show_progress": False, "local_mode": args.local_mode,
    })
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = registry.get_model("DGSR")(config, train_data._dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampling = computing = 0.0
    batches = iter(train_data)
    for _ in range(args.batches):
        start = time.perf_counter()
        batch = next(batches)  # the SubgraphSampler transform runs here, in the collate function
        sampled = time.perf_counter()
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sampling += sampled - start
        computing += time.perf_counter() - sampled
    shapes = {k: tuple(v.shape) for k, v in batch.interaction.items() if k.startswith("dgsr_")}
    print(f"DGSR on {args.dataset}, local_mode {args.local_mode}, batch {args.batch_size}, "
          f"hidden {args.hidden_size}, n = {config['max_neighbors']}, L = {config['n_layers']}")
    print(f"per batch: sampling {sampling / args.batches:.3f} s, model forward+backward "
          f"{computing / args.batches:.3f} s ({len(train_data)} batches per epoch)")
    print(f"sub-graph tensors of the last batch: {shapes}")


if __name__ == "__main__":
    main()
