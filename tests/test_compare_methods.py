"""benchmarks/compare_methods.py: its quick mode writes every section's table with the columns each claim needs, and
its pure helpers agree with hand computations."""

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "compare_methods.py"
NUMBER = r"[-+]?\d+\.\d{3}( ± \d+\.\d{3})?"
PERFORMANCE = ("<!-- performance:start -->\n## Performance\n\n| bench | ratio |\n|---|---|\n| x | 3.0 |\n"
               "<!-- performance:end -->")
LOSS_HEADERS = ["held-out MLM loss", "floor", "loss - floor"]


def load_script():
    spec = importlib.util.spec_from_file_location("compare_methods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_methods"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


compare_methods = load_script()


def tables(markdown: str) -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    """``### heading -> (column headers, {row label: cells})`` of the first table under each heading."""
    found = {}
    for block in markdown.split("\n### ")[1:]:
        heading = block.splitlines()[0]
        lines = [line for line in block.splitlines() if line.startswith("| ")]
        cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
        found[heading] = (cells[0][1:], {row[0]: row[1:] for row in cells[1:]})
    return found


def section(found: dict, title_start: str) -> tuple[list[str], dict[str, list[str]]]:
    matches = [value for heading, value in found.items() if heading.startswith(title_start)]
    assert len(matches) == 1, (title_start, list(found))
    return matches[0]


@pytest.mark.slow
def test_quick_mode_writes_every_section(tmp_path):
    output = tmp_path / "results.md"
    output.write_text(f"# results\n\n{PERFORMANCE}\n")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        cwd=tmp_path,  # the script must find data/ from its own location
        capture_output=True,
        text=True,
        timeout=900,  # a guard for a hung run, not a performance assertion
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = output.read_text()

    # run_all.py's section is untouched, ours sits between its markers.
    assert PERFORMANCE in text
    methods = text.split("<!-- methods:start -->", 1)[1].split("<!-- methods:end -->", 1)[0]
    assert "Quick mode" in methods and "tiny CPU models" in methods
    found = tables(methods)
    seeds = str(len(compare_methods.QUICK.seeds))
    assert seeds == "2"  # so the quick run exercises the ± and the per-seed differences

    expected = {
        "Position encoding": (LOSS_HEADERS, [
            f"{encoding}, {region}" for encoding in ("ALiBi", "learned absolute")
            for region in ("128-token windows (training length)", "512-token windows, positions < 128",
                           "512-token windows, positions 128-511 (beyond training length)")]),
        "RandomMask vs fixed": ([*LOSS_HEADERS, "prom/prom_core_tata MCC"], [
            "fixed masking (m = 1)", "RandomMask (m = 1 -> 9)", "none (from scratch)",
            "CNN (BEACON baseline, no pretraining)"]),
        "Self-distillation vs MLM-only": ([*LOSS_HEADERS, "frozen probe MCC", "fine-tuned MCC"], [
            "self-distillation, EMA teacher", "self-distillation, student", "MLM-only, EMA teacher",
            "MLM-only, student"]),
        "Semi-supervised": (["accuracy", "EMA teacher accuracy", "EMA - model", "mask rate", "mask rate, last quarter",
                             "kept-label accuracy"], [
            f"{method}, {n} labels/class" for n in compare_methods.QUICK.labels_per_class
            for method in ("supervised only", "FixMatch", "Grad-ReLU only", "Avg-Clustering only", "LayerMatch")]),
        "Class imbalance": (["balanced accuracy", "macro-F1", "EMA balanced accuracy", "EMA macro-F1",
                             "EMA - model (balanced acc.)", "final training loss"],
                            ["plain-1x", "plain-2x", "MWA-2x", "IMWA-1x", "IMWA-2x"]),
    }
    assert len(found) == len(expected)
    for title, (headers, rows) in expected.items():
        table_headers, table_rows = section(found, title)
        assert table_headers == [*headers, "seeds"], title
        assert list(table_rows) == rows, title
        for row, cells in table_rows.items():
            assert cells[-1] == seeds, (title, row)
            for header, cell in zip(headers, cells):
                assert cell == "n/a" or re.fullmatch(NUMBER, cell), (title, row, header, cell)

    # Each row has the numbers its claim rests on.
    position = section(found, "Position encoding")[1]
    assert all(re.fullmatch(NUMBER, cell) for cells in position.values() for cell in cells[:3])
    pretraining = section(found, "RandomMask vs fixed")[1]
    for row in ("fixed masking (m = 1)", "RandomMask (m = 1 -> 9)"):
        assert "n/a" not in pretraining[row]
    assert pretraining["none (from scratch)"][:3] == ["n/a"] * 3
    distillation = section(found, "Self-distillation vs MLM-only")[1]
    assert distillation["self-distillation, EMA teacher"][4] != "n/a" and distillation["MLM-only, student"][4] != "n/a"
    assert distillation["self-distillation, student"][4] == "n/a"
    for row, cells in section(found, "Semi-supervised")[1].items():
        assert "n/a" not in cells[:3]  # model and EMA teacher accuracy on every row
        assert (cells[3] == "n/a") == row.startswith("supervised only")  # no mask rate without unlabeled data
    assert all("n/a" not in cells for cells in section(found, "Class imbalance")[1].values())
    # The text under each table states the paired comparisons it rests on.
    assert "(beyond training length): learned absolute - ALiBi:" in methods
    assert "ALiBi, 512-token windows, positions 128-511 (beyond training length): below the floor in" in methods
    assert "RandomMask (m = 1 -> 9): below the floor in" in methods
    assert "self-distillation, EMA teacher: below the floor in" in methods
    assert "initial weights" in methods and "IMWA-2x - plain-2x" in methods and "LayerMatch - FixMatch" in methods

    raw = json.loads((tmp_path / "results_methods.json").read_text())
    assert raw["quick"] is True
    assert set(raw["section_minutes"]) == set(compare_methods.SECTIONS)
    assert {record["section"] for record in raw["runs"]} == set(compare_methods.SECTIONS)
    for record in raw["runs"]:
        for name, value in record["metrics"].items():
            if name in ("mcc", "probe_mcc"):
                assert -1.0 <= value <= 1.0
            elif name.endswith(("accuracy", "macro_f1", "mask_rate", "mask_rate_last")):
                assert 0.0 <= value <= 1.0
            elif name in ("loss", "floor"):
                assert 0.0 < value < 10.0

    # --render_only rebuilds the same section from the JSON alone.
    output.write_text(f"# results\n\n{PERFORMANCE}\n")
    compare_methods.main(["--quick", "--render_only", "--output", str(output)])
    assert output.read_text() == text


def test_sections_flag_rejects_unknown_names(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare_methods.main(["--sections", "position,bogus", "--output", str(tmp_path / "r.md")])
    assert exit_info.value.code == 2
    assert "--sections takes a comma-separated subset" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def test_loss_by_region_splits_at_the_training_length():
    losses = [1.0, 2.0, 3.0, 4.0, 6.0]
    positions = [5, 127, 128, 300, 511]
    before, beyond = compare_methods.loss_by_region(losses, positions, boundary=128)
    assert before == pytest.approx((1.0 + 2.0) / 2)
    assert beyond == pytest.approx((3.0 + 4.0 + 6.0) / 3)
    assert math.isnan(compare_methods.loss_by_region([1.0], [3], boundary=128)[1])


def test_teacher_momentum_base_leaves_the_asked_share_of_initial_weights():
    # Cosine from 0.5 over 2 steps: m_1 = 1 - 0.5 * (cos(pi / 2) + 1) / 2 = 0.75, m_2 = 1.
    assert compare_methods.initial_weight_in_teacher(2, 0.5) == pytest.approx(0.75)
    base = compare_methods.momentum_base_for(200, 0.01)
    assert base == pytest.approx(1 + 2 * math.log(0.01) / 200)
    assert 0.005 < compare_methods.initial_weight_in_teacher(200, base) < 0.02
    assert compare_methods.momentum_base_for(4, 0.01) == 0.0


def test_pseudo_label_summary_weighs_kept_label_accuracy_by_mask_rate():
    logs = [{"loss": 1.0, "mask_rate": 0.0}, {"loss": 0.9, "mask_rate": 0.2, "pseudo_label_accuracy": 0.5},
            {"loss": 0.8, "mask_rate": 0.6, "pseudo_label_accuracy": 0.9}, {"train_loss": 0.9}]
    summary = compare_methods.pseudo_label_summary(logs)
    assert summary["mask_rate"] == pytest.approx(0.8 / 3)
    assert summary["mask_rate_last"] == pytest.approx(0.6)
    assert summary["kept_label_accuracy"] == pytest.approx((0.2 * 0.5 + 0.6 * 0.9) / 0.8)
    assert "kept_label_accuracy" not in compare_methods.pseudo_label_summary([{"mask_rate": 0.0}])
    assert compare_methods.pseudo_label_summary([{"loss": 1.0}]) == {}


def test_paired_differences_and_their_description():
    Run = compare_methods.Run
    runs = [Run("s", "A", seed, {"m": value}, 0.0, 0.0) for seed, value in ((0, 0.5), (1, 0.7), (2, 0.4))]
    runs += [Run("s", "B", seed, {"m": value}, 0.0, 0.0) for seed, value in ((0, 0.4), (1, 0.4), (3, 0.0))]
    differences = compare_methods.paired_differences(runs, "A", "B", "m")
    assert differences == pytest.approx([0.1, 0.3])  # seeds 2 and 3 have no partner
    text = compare_methods.describe_difference("A - B", differences)
    assert text == f"A - B: +0.200 ± {np.std([0.1, 0.3], ddof=1):.3f} (higher in 2 of 2 seeds)"
    assert compare_methods.describe_difference("A - B", []) == "A - B: n/a"
