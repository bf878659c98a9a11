"""Smoke test of benchmarks/compare_methods.py: its quick mode runs every section and writes only its own section."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "compare_methods.py"
NUMBER = r"-?\d+\.\d{3}( ± \d+\.\d{3})?"
PERFORMANCE = "<!-- performance:start -->\n## Performance\n\n| bench | ratio |\n|---|---|\n| x | 3.0 |\n<!-- performance:end -->"

EXPECTED_ROWS = {
    "pretraining": [
        "BEACON-tiny, 6-mer, DNABERT fixed masking",
        "BEACON-tiny, 6-mer, RandomMask",
        "BEACON-tiny, 6-mer, self-distillation",
        "BEACON-tiny, 6-mer, none (from scratch)",
        "CNN (BEACON baseline, no pretraining)",
        "ResNet (BEACON baseline, no pretraining)",
        "BiLSTM (BEACON baseline, no pretraining)",
    ],
    "position": ["ALiBi", "learned absolute"],
    "tokenization": [
        "BEACON-tiny, single nucleotide",
        "BEACON-tiny, overlapping 6-mer",
        "BEACON-tiny, non-overlapping 6-mer",
    ],
    "semi_supervised": [
        "BEACON-tiny (pretrained), supervised only",
        "BEACON-tiny (pretrained), FixMatch",
        "BEACON-tiny (pretrained), LayerMatch",
        "CNN (BEACON baseline), supervised only",
    ],
    "imbalance": [
        "CNN, plain",
        "CNN, EMA",
        "CNN, IMWA",
        "CNN, IMWA+EMA",
        "BEACON-tiny (pretrained on DNA), plain",
    ],
}


def load_script():
    spec = importlib.util.spec_from_file_location("compare_methods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_methods"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def table_cells(markdown: str, row: str) -> list[str]:
    lines = [line for line in markdown.splitlines() if line.startswith(f"| {row} |")]
    assert lines, f"no table row {row!r}"
    return [cell.strip() for cell in lines[0].strip("|").split("|")][1:]


@pytest.mark.slow
def test_quick_mode_writes_every_section(tmp_path):
    output = tmp_path / "results.md"
    output.write_text(f"# results\n\n{PERFORMANCE}\n")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        cwd=tmp_path,  # the script must find data/ and examples/ from its own location
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

    for rows in EXPECTED_ROWS.values():
        for row in rows:
            cells = table_cells(methods, row)
            # Every metric cell of a method row holds a number, and the last cell counts the seeds.
            assert re.fullmatch(NUMBER, cells[0]), (row, cells)
            assert cells[-1] == "1", (row, cells)

    # MCC in [-1, 1]; masked-LM losses positive; balanced accuracy and macro-F1 in [0, 1].
    raw = json.loads((tmp_path / "results_methods.json").read_text())
    assert raw["quick"] is True
    by_section = {}
    for record in raw["runs"]:
        by_section.setdefault(record["section"], []).append(record)
    assert set(by_section) == set(EXPECTED_ROWS)
    for section, records in by_section.items():
        assert {r["row"] for r in records} >= set(EXPECTED_ROWS[section])
        for record in records:
            metrics = record["metrics"]
            if "mcc" in metrics:
                assert -1.0 <= metrics["mcc"] <= 1.0
            for name in ("balanced_accuracy", "macro_f1"):
                if name in metrics:
                    assert 0.0 <= metrics[name] <= 1.0
            for name, value in metrics.items():
                if name.startswith("loss_"):
                    assert 0.0 < value < 10.0
    position = by_section["position"][0]["metrics"]
    assert set(position) == {"loss_128", "loss_512", "loss_2048"}
    assert set(raw["section_minutes"]) == set(EXPECTED_ROWS)

    # --render_only rebuilds the same section from the JSON alone.
    output.write_text(f"# results\n\n{PERFORMANCE}\n")
    load_script().main(["--quick", "--render_only", "--output", str(output)])
    assert output.read_text() == text


def test_sections_flag_rejects_unknown_names(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(["--sections", "pretraining,bogus", "--output", str(tmp_path / "r.md")])
    assert exit_info.value.code == 2
    assert "--sections takes a comma-separated subset" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()
