"""Run every performance benchmark in one command (`make bench`) and record the output in results.md.

Each ``bench_*.py`` prints its own markdown table and ratios against a baseline measured in the same
run; this script runs them one after another (never in parallel, so they do not compete for the two
cores) and rewrites the "Performance" section of ``benchmarks/results.md``, leaving the method
comparison written by ``compare_methods.py`` untouched.

``bench_gpu.py`` is not among them: it measures a GPU (BERT-base sizes, minutes of an accelerator) and writes its own
``benchmarks/results_gpu.md``. On a CPU machine it has only its ``--quick`` smoke run, whose tiny single-thread
numbers say nothing about performance (the test suite runs it as a check), so ``make bench`` leaves it out and never
touches ``results_gpu.md``. On a machine with CUDA, ``--gpu`` runs it after the CPU benchmarks.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"
BENCHES = ("bench_tokenizers.py", "bench_collator.py", "bench_model.py")
GPU_BENCH = "bench_gpu.py"
START, END = "<!-- performance:start -->", "<!-- performance:end -->"


def machine_info() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}")


def replace_section(text: str, start: str, end: str, body: str) -> str:
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return (text.rstrip() + "\n\n" if text.strip() else "# hf_genomics benchmark results\n\n") + block + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark that has it")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results file to update")
    parser.add_argument("--gpu", action="store_true",
                        help=f"then run {GPU_BENCH} (needs CUDA; it writes benchmarks/results_gpu.md itself)")
    args = parser.parse_args()
    if args.gpu:
        import torch

        if args.quick:
            parser.error(f"--gpu runs the full {GPU_BENCH}; its --quick CPU smoke run is the test suite's")
        if not torch.cuda.is_available():
            parser.error(f"--gpu: no CUDA device here ({GPU_BENCH} needs one)")

    parts = [f"## Performance (`make bench`)\n\nMachine: {machine_info()}.\n"]
    failed = []
    for name in BENCHES:
        command = [sys.executable, str(HERE / name)] + (["--quick"] if args.quick else [])
        print(f"==> {' '.join(command[1:])}", flush=True)
        run = subprocess.run(command, capture_output=True, text=True)
        print(run.stdout, end="")
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            failed.append(name)
        shown = " ".join(["python", f"benchmarks/{name}"] + command[2:])
        parts.append(f"### `{shown}`\n\n{run.stdout.strip() or '(no output: it failed, see stderr)'}\n")
    existing = args.output.read_text() if args.output.exists() else ""
    args.output.write_text(replace_section(existing, START, END, "\n".join(parts)))
    print(f"Wrote the performance section of {args.output}")
    if args.gpu:
        command = [sys.executable, str(HERE / GPU_BENCH)]
        print(f"==> {GPU_BENCH} (its report: {HERE / 'results_gpu.md'})", flush=True)
        if subprocess.run(command).returncode != 0:
            failed.append(GPU_BENCH)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
