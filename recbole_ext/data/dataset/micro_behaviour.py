"""Dataset plugin of EMBSR (Yuan et al., ICDE 2022): micro-behaviour sessions.

:class:`~recbole_ext.data.dataset.base.ExtSequentialDataset` already merges consecutive
micro-behaviours on one item into macro items with their operation runs, so the target of every
example is the first micro-behaviour on a new item (the paper's collapse of the trailing run) and
stock models see the same macro sequences, targets and split. This plugin adds what only EMBSR needs:

* the **target's first operation** (``<op>_first``, ids of the operation vocabulary), read only
  when ``star_op: target`` reproduces the paper's star node; the merged ``<op>`` run keeps the
  latest ``max_operation_run`` operations, which can drop the first one, hence a separate field.
* ``example_selection``: ``every_boundary`` (default: RecBole's examples, one per macro item,
  identical to the stock models') or ``session`` (the paper's protocol: one example per session,
  the session's last macro item; with ``SESSION_FIELD`` the input is cropped to that session).
"""

import numpy as np
import torch

from recbole.utils import FeatureSource, FeatureType

from recbole_ext.data.dataset.base import ExtSequentialDataset

EXAMPLE_SELECTIONS = ("every_boundary", "session")


class MicroBehaviourDataset(ExtSequentialDataset):
    def __init__(self, config):
        if not config["OPERATION_FIELD"]:
            raise ValueError(
                "OPERATION_FIELD is not set: EMBSR needs a dataset with one row per micro-behaviour "
                "and an operation token field (set OPERATION_FIELD in the dataset's yaml)"
            )
        if not config["merge_micro_behaviours"]:
            raise ValueError("merge_micro_behaviours must be True for EMBSR (it reads macro items and their runs)")
        selection = config["example_selection"] or "every_boundary"
        if selection not in EXAMPLE_SELECTIONS:
            raise ValueError(f"example_selection must be one of {EXAMPLE_SELECTIONS}, got {selection!r}")
        self.example_selection = selection
        self.target_first_op_field = config["OPERATION_FIELD"] + "_first"
        super().__init__(config)

    def _merge_micro_behaviours(self, op_field):
        # A copy made before the merge keeps the first micro-behaviour's value of each run, since
        # the macro row is the run's first row.
        first = self.target_first_op_field
        if op_field in self.inter_feat:
            self.inter_feat[first] = self.inter_feat[op_field]
            self.set_field_property(first, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)
        super()._merge_micro_behaviours(op_field)

    def _remap_ID_all(self):
        super()._remap_ID_all()
        # Re-express the first operations in the operation field's own vocabulary.
        op_field, first = self.config["OPERATION_FIELD"], self.target_first_op_field
        if first not in self.field2id_token:
            return
        op_token_to_id = self.field2token_id[op_field]
        lookup = np.array([op_token_to_id.get(token, 0) for token in self.field2id_token[first]], dtype=np.int64)
        self.inter_feat[first] = lookup[self.inter_feat[first].to_numpy()]
        self.field2id_token[first] = self.field2id_token[op_field]
        self.field2token_id[first] = op_token_to_id

    def data_augmentation(self):
        super().data_augmentation()
        if self.example_selection == "session":
            self._keep_last_example_of_each_session()

    def _keep_last_example_of_each_session(self):
        """One example per session: its last macro item is the target (the paper's protocol)."""
        examples = self.inter_feat  # sorted by user, then time, by RecBole's augmentation
        session_field = self.config["SESSION_FIELD"]
        key = examples[self.uid_field].numpy().astype(np.int64)
        if session_field:
            key = key * (int(examples[session_field].max()) + 1) + examples[session_field].numpy()
        is_last = np.ones(len(key), dtype=bool)
        is_last[:-1] = key[1:] != key[:-1]
        examples = examples[torch.from_numpy(np.flatnonzero(is_last))]
        if session_field:
            examples = self._crop_inputs_to_session(examples, session_field)
        self.inter_feat = examples

    def _crop_inputs_to_session(self, examples, session_field):
        """Drop input positions from earlier sessions (a prefix, as inputs are in time order)."""
        session_list = examples[session_field + self.config["LIST_SUFFIX"]]
        length = examples[self.item_list_length_field]
        positions = torch.arange(session_list.shape[1]).unsqueeze(0)
        is_real = positions < length.unsqueeze(1)
        in_session = is_real & (session_list == examples[session_field].unsqueeze(1))
        start = (is_real & ~in_session).sum(1)
        new_length = length - start
        source = (positions + start.unsqueeze(1)).clamp(max=session_list.shape[1] - 1)
        keep = positions < new_length.unsqueeze(1)
        list_suffix = self.config["LIST_SUFFIX"]
        for field in list(examples.columns):
            if not field.endswith(list_suffix):
                continue
            values = examples[field]
            index = source.view(source.shape + (1,) * (values.dim() - 2)).expand_as(values)
            mask = keep.view(keep.shape + (1,) * (values.dim() - 2))
            examples[field] = torch.gather(values, 1, index) * mask
        examples[self.item_list_length_field] = new_length
        # sessions with a single macro item have no input left; the paper drops them
        return examples[torch.from_numpy(np.flatnonzero((new_length > 0).numpy()))]
