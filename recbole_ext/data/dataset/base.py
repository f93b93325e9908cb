"""The base of every dataset plugin: RecBole's ``SequentialDataset`` plus micro-behaviour merging.

Without ``OPERATION_FIELD`` in the config this class behaves exactly like RecBole's
``SequentialDataset`` (same examples, same split), which is what stock sequential models get when
they run through the package.

With ``OPERATION_FIELD`` (datasets holding one row per micro-behaviour: click, cart, read
comments, ...) and ``merge_micro_behaviours: True``, consecutive rows of one user (and session,
if ``SESSION_FIELD`` is set) on the same item are merged into one macro row before RecBole's
filtering, remapping and augmentation. The macro row keeps its first micro-behaviour's
timestamp, and the operation field becomes a ``token_seq`` with the run of operations (the latest
``max_operation_run``). Every model then sees the same macro-item sequences and targets: the
target of an example is the first micro-behaviour on a new item (EMBSR's definition), and the
``<op>_list`` field holds the runs of the input items.
"""

import numpy as np
from recbole.data.dataset import SequentialDataset
from recbole.utils import FeatureType


def merge_micro_behaviours(frame, uid_field, iid_field, time_field, op_field, session_field=None, max_run=None):
    """Merge consecutive micro-behaviour rows on one item into macro rows (vectorised over rows).

    Returns ``(macro_frame, longest_run)``; ``macro_frame[op_field]`` holds arrays of operation
    tokens, in time order, as RecBole stores ``token_seq`` fields.
    """
    # stable sort: rows with equal timestamps keep their file order
    frame = frame.sort_values([uid_field, time_field], kind="mergesort").reset_index(drop=True)
    keys = [uid_field, iid_field] + ([session_field] if session_field else [])
    starts_run = np.zeros(len(frame), dtype=bool)
    starts_run[:1] = True
    for key in keys:
        values = frame[key].to_numpy()
        starts_run[1:] |= values[1:] != values[:-1]
    run_starts = np.flatnonzero(starts_run)
    runs = np.split(frame[op_field].to_numpy(), run_starts[1:]) if len(frame) else []
    if max_run:
        runs = [run[-max_run:] for run in runs]
    macro = frame.iloc[run_starts].reset_index(drop=True)
    macro[op_field] = runs
    longest = max((len(run) for run in runs), default=1)
    return macro, longest


class ExtSequentialDataset(SequentialDataset):
    def _load_inter_feat(self, token, dataset_path):
        super()._load_inter_feat(token, dataset_path)
        op_field = self.config["OPERATION_FIELD"]
        if op_field and self.config["merge_micro_behaviours"]:
            self._merge_micro_behaviours(op_field)

    def _merge_micro_behaviours(self, op_field):
        session_field = self.config["SESSION_FIELD"]
        for key, field in (("OPERATION_FIELD", op_field), ("SESSION_FIELD", session_field)):
            if field and field not in self.inter_feat:
                raise ValueError(
                    f"{key} '{field}' is not a loaded column of {self.dataset_name}.inter "
                    f"(loaded: {', '.join(self.inter_feat.columns)}); add it to load_col"
                )
        if self.field2type[op_field] != FeatureType.TOKEN:
            raise ValueError(f"OPERATION_FIELD '{op_field}' must be a token field, not {self.field2type[op_field].value}")
        self.inter_feat, longest = merge_micro_behaviours(
            self.inter_feat,
            self.config["USER_ID_FIELD"],
            self.config["ITEM_ID_FIELD"],
            self.config["TIME_FIELD"],
            op_field,
            session_field,
            self.config["max_operation_run"],
        )
        self.field2type[op_field] = FeatureType.TOKEN_SEQ
        self.field2seqlen[op_field] = longest
