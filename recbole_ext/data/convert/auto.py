"""Automatic conversion on ``--dataset=NAME``: use the atomic files if they are there, convert the
raw public files if those are there, otherwise fail with one line that says what to download and
which command to run."""

import os

from recbole_ext.data.convert import build_parser, get_source, known_sources, run_conversion


class DatasetNotFoundError(ValueError):
    """Neither atomic files nor raw files of a dataset are available."""


def ensure_dataset(dataset: str, data_path: str, raw_data_path: str) -> None:
    """Make ``<data_path>/<dataset>/<dataset>.inter`` exist, converting
    ``<raw_data_path>/<dataset>/`` with the source's paper-default filters if needed."""
    target_dir = os.path.join(data_path, dataset)
    if os.path.isfile(os.path.join(target_dir, f"{dataset}.inter")):
        return
    source = get_source(dataset)
    if source is None:
        raise DatasetNotFoundError(
            f"dataset {dataset!r}: no {os.path.join(target_dir, dataset + '.inter')} and it is not a "
            f"convertible public dataset (known sources: {', '.join(sorted(known_sources()))}, "
            f"amazon-<category>, goodreads-<genre>)"
        )
    raw_dir = os.path.join(raw_data_path, dataset)
    if not (os.path.isdir(raw_dir) and source.present(raw_dir)):
        raise DatasetNotFoundError(
            f"dataset {dataset!r}: no atomic files in {target_dir} and no raw files in {raw_dir}; "
            f"put {source.needs} there (public release: {source.release}) and rerun, or convert "
            f"by hand: {source.command(raw_dir)} --output {target_dir}"
        )
    print(f"[{dataset}] {target_dir} not found; converting the raw files in {raw_dir}")
    args = build_parser(source).parse_args(["--input", raw_dir, "--output", target_dir])
    run_conversion(source, args)
