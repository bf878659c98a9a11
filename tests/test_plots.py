import numpy as np
import pytest
from PIL import Image

from hf_genomics.plots import plot_confusion_matrix, plot_loss_curves, plot_pair_map, plot_randommask_schedule

HISTORY = [
    {"step": 10, "loss": 2.0, "randommask_boundary": 6, "randommask_hidden_nucleotides": 3.0},
    {"step": 20, "loss": 1.5, "randommask_boundary": 8, "randommask_hidden_nucleotides": 5.0},
    {"step": 20, "eval_loss": 1.7},
]


def _is_png(path):
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 100


def test_every_plot_writes_a_png(tmp_path):
    assert _is_png(plot_loss_curves({"pretrain": HISTORY}, tmp_path / "loss.png"))
    assert _is_png(plot_randommask_schedule(HISTORY, tmp_path / "mask.png"))
    pairs = np.zeros((5, 5))
    pairs[0, 4] = pairs[4, 0] = 1
    assert _is_png(plot_pair_map(pairs, pairs * 0.8, tmp_path / "pairs.png"))
    assert _is_png(plot_confusion_matrix(np.eye(3) * 4, ["a", "b", "c"], tmp_path / "cm.png"))


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="RandomMaskCallback"):
        plot_randommask_schedule([{"step": 1, "loss": 1.0}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="same shape"):
        plot_pair_map(np.zeros((3, 3)), np.zeros((4, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="labels"):
        plot_confusion_matrix(np.eye(2), ["a", "b", "c"], tmp_path / "x.png")
