"""Dataset plugins: ``SequentialDataset`` subclasses, one per file (see DEVELOPING.md)."""

from recbole_ext.data.dataset.base import ExtSequentialDataset

__all__ = ["ExtSequentialDataset"]
