"""benchmarks/bench_gpu.py: its --quick CPU mode checks every attention path against the float64 reference and
writes its report where it is told (never over the GPU results); a check over its tolerance fails the run."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "bench_gpu.py"
GPU_RESULTS = REPO_ROOT / "benchmarks" / "results_gpu.md"
PATHS = ("eager", "sdpa", "alibi_blocked", "alibi_flex", "auto")


def load_script():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def table_rows(markdown: str, first_column: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in markdown.splitlines() if re.match(rf"\| {re.escape(first_column)}\b", line)]


@pytest.mark.slow
def test_quick_mode_checks_every_attention_path(tmp_path):
    before = GPU_RESULTS.read_bytes() if GPU_RESULTS.exists() else None
    output = tmp_path / "gpu.md"
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--output", str(output)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)  # a guard for a hung run, not a timing
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = output.read_text()
    assert (GPU_RESULTS.read_bytes() if GPU_RESULTS.exists() else None) == before

    for path in PATHS:
        rows = table_rows(report, path)
        # fp32 and bf16, each padded and packed; every one within its tolerance.
        assert sorted((row[1], row[2]) for row in rows) == [
            ("bf16", "packed"), ("bf16", "padded"), ("fp32", "packed"), ("fp32", "padded")], rows
        for name, precision, layout, forward, gradient, tolerance, result in rows:
            assert result == "ok"
            assert float(forward) <= float(tolerance) == {"fp32": 1e-5, "bf16": 1e-2}[precision]
            if path == "alibi_flex":
                assert gradient.startswith("n/a")  # no flex backward on the CPU
            else:
                assert float(gradient) <= float(tolerance)
    assert "Correctness: every check that ran passed." in report
    assert "## 2. Training throughput" in report and "## 3. Peak memory" in report
    assert table_rows(report, "2 x 128")  # a throughput row was measured
    assert "## 4. Examples" not in report  # skipped in --quick


def test_a_check_over_its_tolerance_fails_the_run(tmp_path, monkeypatch, capsys):
    bench_gpu = load_script()
    monkeypatch.setattr(bench_gpu, "PATHS", ("sdpa",))
    monkeypatch.setattr(bench_gpu, "TOLERANCE", {"fp32": 1e-12, "bf16": 1e-2})
    output = tmp_path / "gpu.md"
    assert bench_gpu.main(["--quick", "--sections", "correctness", "--output", str(output)]) == 1
    rows = table_rows(output.read_text(), "sdpa")
    assert sorted((row[1], row[-1]) for row in rows) == [("bf16", "ok"), ("bf16", "ok"), ("fp32", "FAIL"),
                                                         ("fp32", "FAIL")]
    assert "Correctness: 2 check(s) failed." in capsys.readouterr().out


def test_quick_mode_needs_an_output_path_and_full_mode_a_gpu(capsys):
    bench_gpu = load_script()
    with pytest.raises(SystemExit) as exited:
        bench_gpu.main(["--quick"])
    assert exited.value.code == 2 and "--quick needs --output" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exited:
            bench_gpu.main([])
        assert exited.value.code == 2 and "no CUDA device" in capsys.readouterr().err
