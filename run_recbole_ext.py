"""Run RecBole and recbole-ext models with RecBole's command-line conventions.

    python run_recbole_ext.py --model=QuerySeqRec --dataset=diginetica
    python run_recbole_ext.py -m SASRec -d synthetic --epochs=5 --result_file=out.json

Flags are those of RecBole's ``run_recbole.py`` (``--model/-m``, ``--dataset/-d``,
``--config_files``, ``--nproc``, ``--ip``, ``--port``, ``--world_size``, ``--group_offset``);
any ``--key=value`` overrides a config key, as in RecBole. ``--model=A,B,C`` compares models
side by side (see ``recbole_ext.compare``).
"""

import argparse
import sys


def build_parser():
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


def main(argv=None):
    from recbole_ext.errors import USER_ERRORS, report_interrupted, report_user_error

    argv = sys.argv[1:] if argv is None else argv
    args, _ = build_parser().parse_known_args(argv)
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    try:
        if "," in args.model:
            from recbole_ext.compare import main as compare_main

            return compare_main(argv)
        from recbole_ext.quick_start import run

        run(
            args.model, args.dataset, config_file_list=config_files, nproc=args.nproc,
            world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset,
            result_file=args.result_file,
        )
    except USER_ERRORS as error:
        if args.traceback:
            raise
        return report_user_error(error)
    except KeyboardInterrupt as error:  # issue 14.7: one line, exit 130, unfinished outputs removed
        return report_interrupted(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
