"""Checkpoint converters from upstream layouts (BEACON-B release, DNABERT) to BEACON-B folders."""

from .checkpoints import convert_checkpoint

__all__ = ["convert_checkpoint"]
