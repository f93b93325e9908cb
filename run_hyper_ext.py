"""Tune RecBole and recbole-ext models with RecBole's ``run_hyper.py`` conventions.

    python run_hyper_ext.py --model=HUGT --dataset=synthetic --algo=random --max_evals=20
    python run_hyper_ext.py --model=SASRec --params_file=my.hyper --tool=Ray --algo=random --max_evals=8

Flags: ``--model``, ``--dataset``, ``--config_files``, ``--params_file`` (default the model's
``properties/hyper/<Model>.hyper``), ``--output_file``, ``--display_file``,
``--tool Hyperopt|Ray``, ``--algo exhaustive|random|bayes``, ``--max_evals``; any other
``--key=value`` fixes a config key for every trial. See ``recbole_ext.tuning``.
"""

import sys

from recbole_ext.tuning import main

if __name__ == "__main__":
    sys.exit(main())
