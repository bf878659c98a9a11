"""Trainer subclasses and callbacks: a shared EMA-teacher base, self-distillation, LayerMatch, IMWA."""
