"""The command line of ``run_recbole_ext.py`` / ``recbole-ext``: RecBole's ``run_recbole.py`` flags.

    recbole-ext --model=QuerySeqRec --dataset=diginetica
    recbole-ext -m SASRec -d synthetic --epochs=5 --result_file=out.json
    recbole-ext --model=SASRec,HUGT --dataset=synthetic --tune=8 --repeats=3   # see recbole_ext.compare

Flags are those of RecBole's ``run_recbole.py`` (``--model/-m``, ``--dataset/-d``,
``--config_files``, ``--nproc``, ``--ip``, ``--port``, ``--world_size``, ``--group_offset``);
any ``--key=value`` overrides a config key, as in RecBole. ``--model=A,B,C`` compares models
side by side (:mod:`recbole_ext.compare`). The parser lives here, in the package, so the library
never imports the ``run_recbole_ext.py`` script.
"""

import argparse
import sys


def build_parser():
    """The flags of one run (the comparison adds its own in :func:`recbole_ext.compare.build_parser`)."""
    parser = argparse.ArgumentParser(description="Run RecBole and recbole-ext models.")
    parser.add_argument("--model", "-m", type=str, default="SASRec", help="model name, or A,B,C to compare")
    parser.add_argument("--dataset", "-d", type=str, default="synthetic", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    parser.add_argument("--nproc", type=int, default=1, help="processes (ranks) for distributed training")
    parser.add_argument("--ip", type=str, default="localhost", help="master address of distributed training")
    parser.add_argument("--port", type=str, default="5678", help="master port of distributed training")
    parser.add_argument("--world_size", type=int, default=-1, help="total ranks over all machines")
    parser.add_argument("--group_offset", type=int, default=0, help="rank offset of this machine")
    parser.add_argument("--result_file", type=str, default=None, help="write a JSON result record here")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    return parser


def split_config_files(text):
    """``--config_files`` is one space-separated string, as in RecBole."""
    return text.strip().split(" ") if text else None


def _run(argv, args):
    """The work of one command line: a comparison for ``--model=A,B``, else one run."""
    if "," in args.model:
        from recbole_ext.compare import main as compare_main

        return compare_main(argv)
    from recbole_ext.quick_start import run

    run(
        args.model, args.dataset, config_file_list=split_config_files(args.config_files), nproc=args.nproc,
        world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset,
        result_file=args.result_file,
    )
    return 0


def main(argv=None):
    """Entry point of ``recbole-ext``; returns the exit status (2 after a user error: one line)."""
    from recbole_ext.errors import USER_ERRORS, report_interrupted, report_user_error

    argv = sys.argv[1:] if argv is None else list(argv)
    args, _ = build_parser().parse_known_args(argv)
    try:
        return _run(argv, args)
    except USER_ERRORS as error:
        if args.traceback:
            raise
        return report_user_error(error)
    except KeyboardInterrupt as error:  # one line, exit 130, the unfinished run's outputs removed
        return report_interrupted(error)


if __name__ == "__main__":
    sys.exit(main())
