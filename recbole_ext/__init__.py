"""recbole-ext: five published sequential recommenders as RecBole plugins.

QuerySeqRec, HUGT, EMBSR, MAGNN and DGSR run through RecBole's training, evaluation and tuning
tooling next to RecBole's built-in baselines. See README.md.
"""

from recbole_ext import compat as _compat

__version__ = "0.1.0"

_compat.apply()
