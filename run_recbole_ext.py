"""Run RecBole and recbole-ext models with RecBole's command-line conventions (a thin shell
around :func:`recbole_ext.cli.main`; ``recbole-ext`` is the same command once installed).

    python run_recbole_ext.py --model=QuerySeqRec --dataset=diginetica
    python run_recbole_ext.py -m SASRec -d synthetic --epochs=5 --result_file=out.json
    python run_recbole_ext.py --model=SASRec,HUGT --dataset=synthetic --tune=8 --repeats=3
"""

import sys

from recbole_ext.cli import build_parser, main  # noqa: F401  (build_parser: kept for old imports)

if __name__ == "__main__":
    sys.exit(main())
