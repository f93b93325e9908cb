"""Converters from raw public dataset files to RecBole atomic files.

``python -m recbole_ext.data.convert SOURCE --input RAW_DIR [--output OUT_DIR] [filters...]``
(``python -m recbole_ext.data.convert --list`` lists the sources). One module per source family;
each exposes ``SOURCES`` (a list of :class:`~recbole_ext.data.convert.common.Source`), and
``amazon``/``goodreads`` also ``source_for(name)`` for any category or genre. The raw formats and
quirks handled are those of ``shared/DATASETS.md``.
"""

import argparse
import importlib
import os

from recbole_ext.data.convert.common import Report, Source, atomic_output

_SOURCE_MODULES = (
    "diginetica", "unsplash", "jd", "trivago", "taobao", "retailrocket",
    "amazon", "movielens", "netflix", "steam", "goodreads",
)
# Families whose names carry a parameter (amazon-<category>, goodreads-<genre>).
_PREFIXED = {"amazon-": "amazon", "goodreads-": "goodreads"}


def _module(name):
    return importlib.import_module(f"recbole_ext.data.convert.{name}")


def known_sources():
    """``{name: Source}`` of every named source (amazon and goodreads list their paper ones)."""
    sources = {}
    for module_name in _SOURCE_MODULES:
        for source in _module(module_name).SOURCES:
            sources[source.name] = source
    return sources


def get_source(name):
    """The :class:`Source` for a dataset name, or ``None`` if it is not convertible."""
    sources = known_sources()
    if name in sources:
        return sources[name]
    for prefix, module_name in _PREFIXED.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return _module(module_name).source_for(name)
    return None


def build_parser(source):
    parser = argparse.ArgumentParser(
        prog=f"python -m recbole_ext.data.convert {source.name}",
        description=f"{source.description} Needs {source.needs} (public release: {source.release}).",
    )
    parser.add_argument("--input", required=True, help="folder holding the raw files (never modified)")
    parser.add_argument("--output", default=None,
                        help="output folder (default dataset_atomic/<name>/); its basename is the dataset name")
    source.add_arguments(parser)
    return parser


def default_output_dir(name):
    from recbole_ext.paths import DATASET_ATOMIC_DIR

    return os.path.join(DATASET_ATOMIC_DIR, name)


def run_conversion(source, args, out=print):
    """Convert ``args.input`` with ``source`` into ``args.output`` (a temporary folder renamed on
    success); the files are named after the output folder. Returns the output folder."""
    output_dir = args.output or default_output_dir(source.name)
    if not os.path.isdir(args.input):
        raise FileNotFoundError(f"--input {args.input}: no such folder")
    report = Report(source.name, out=out)
    dataset_name = os.path.basename(os.path.normpath(output_dir))
    with atomic_output(output_dir) as tmp_dir:
        source.convert(args.input, os.path.join(tmp_dir, dataset_name), args, report)
    report.print_written()
    report.out(f"[{source.name}] dataset written to {output_dir}")
    return output_dir


def convert(name, input_dir, output_dir=None, argv=(), out=print):
    """Programmatic entry point: ``convert('ml-1m', 'dataset_raw/ml-1m', argv=['--user-core', '5'])``."""
    source = get_source(name)
    if source is None:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(sorted(known_sources()))}")
    args = build_parser(source).parse_args(["--input", input_dir, *list(argv)]
                                           + (["--output", output_dir] if output_dir else []))
    return run_conversion(source, args, out=out)
