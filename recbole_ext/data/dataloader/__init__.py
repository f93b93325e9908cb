"""Batch transforms installed on RecBole's dataloaders, one per file (see DEVELOPING.md)."""
