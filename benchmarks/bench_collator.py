"""DataCollatorForRandomMask throughput against DNABERT's masking, and its share of a training step.

In one run, on DNABERT-style chunks (up to 510 bp) of the shipped human chr1, tokenized as overlapping 6-mers:

- batches/s of `DataCollatorForRandomMask` (fixed schedule, m = 6: DNABERT's masking) against a reference
  collate written here the way DNABERT's `run_pretrain.py` does it (`pad_sequence`, then `mask_tokens` with its
  per-sequence, per-centre loop over the `MASK_LIST` offsets), same inputs (target >= 3x); masking-only times too;
- the collator's time on a batch of `examples/run_randommask.py`'s defaults (16 chunks of <= 128 bp) as a fraction
  of one training step (forward, backward, AdamW) of that example's default model on the same batch (target < 5%).

Everything runs with `--threads` torch threads (default 1, what DataLoader workers use). On a loaded machine
multi-threaded small tensor ops mostly wait for busy cores, which penalises the many small vectorised ops of the
collator far more than the reference's Python loop.

`--against REV` also times the collator as committed at git revision REV against the current one, batch by batch in
alternating order on the same batches (median CPU time per batch): a change's cost, which the DNABERT ratio (it
swings by +-20% between runs) cannot resolve.

    python benchmarks/bench_collator.py [--quick] [--threads 1] [--json results.json] [--against REV]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from hf_genomics import (
    BeaconConfig,
    BeaconForMaskedLM,
    DataCollatorForRandomMask,
    KmerTokenizer,
    default_corpus_files,
)
from hf_genomics.data.pretraining_corpus import pretraining_chunks

from dnabert_reference import dnabert_mask_tokens

TARGETS = {"collator_vs_dnabert": 3.0, "collator_share_of_step": 0.05}
REPO = Path(__file__).resolve().parents[1]
def best_time(function, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU time over `repeats` runs (CPU time is steadier on a shared machine)."""
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - wall), min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def encoded_batches(tokenizer, n_batches: int, batch_size: int, max_length: int) -> list[list[dict]]:
    corpus = default_corpus_files("dna")[:1]
    rows = pretraining_chunks(corpus, max_length=max_length, min_length=16, validation_fraction=0)
    chunks = [row["sequence"] for row in rows]
    needed = n_batches * batch_size
    sequences = chunks[:: max(1, len(chunks) // needed)][:needed]  # spread along chr1
    encodings = [{"input_ids": ids} for ids in tokenizer(sequences)["input_ids"]]
    return [encodings[i : i + batch_size] for i in range(0, len(encodings), batch_size)]


def run(quick: bool) -> dict:
    torch.manual_seed(0)
    tokenizer = KmerTokenizer(k=6, stride=1)
    n_batches, repeats = (4, 2) if quick else (16, 3)
    batches = encoded_batches(tokenizer, n_batches, batch_size=32, max_length=510)
    collator = DataCollatorForRandomMask(tokenizer, schedule="fixed", seed=0)

    def collate_ours():
        for batch in batches:
            collator(batch)

    def collate_dnabert():
        # DNABERT's collate: a tensor per example, pad_sequence, then mask_tokens.
        for batch in batches:
            examples = [torch.tensor(example["input_ids"], dtype=torch.long) for example in batch]
            input_ids = pad_sequence(examples, batch_first=True, padding_value=tokenizer.pad_token_id)
            dnabert_mask_tokens(input_ids, tokenizer, 0.025)

    padded = [tokenizer.pad(batch, return_tensors="pt")["input_ids"] for batch in batches]

    def mask_ours():
        for input_ids in padded:
            collator.torch_mask_tokens(input_ids.clone())

    def mask_dnabert():
        for input_ids in padded:
            dnabert_mask_tokens(input_ids.clone(), tokenizer, 0.025)

    timings = {name: best_time(function, repeats) for name, function in [
        ("collate_ours", collate_ours), ("collate_dnabert", collate_dnabert),
        ("mask_ours", mask_ours), ("mask_dnabert", mask_dnabert),
    ]}  # fmt: skip

    # Share of a training step: the example's default model and batch (16 chunks of <= 128 bp).
    step_batch = encoded_batches(tokenizer, 1, batch_size=16, max_length=128)[0]
    config = BeaconConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128,
    )  # fmt: skip
    model = BeaconForMaskedLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = collator(step_batch)

    def train_step():
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    train_step()  # warm-up
    step_repeats = 3 if quick else 10
    timings["train_step"] = best_time(train_step, step_repeats)
    timings["collate_step_batch"] = best_time(lambda: collator(step_batch), step_repeats)

    n_total = len(batches)
    results = {
        "batches": n_total,
        "batch_shape": list(padded[0].shape),
        "collate_batches_per_s": {name: n_total / timings[name][0] for name in ("collate_ours", "collate_dnabert")},
        "timings_s": {name: {"wall": wall, "cpu": cpu} for name, (wall, cpu) in timings.items()},
        "ratios": {
            "collator_vs_dnabert": timings["collate_dnabert"][0] / timings["collate_ours"][0],
            "collator_vs_dnabert_cpu": timings["collate_dnabert"][1] / timings["collate_ours"][1],
            "masking_only_vs_dnabert": timings["mask_dnabert"][0] / timings["mask_ours"][0],
            "collator_share_of_step": timings["collate_step_batch"][0] / timings["train_step"][0],
            "collator_share_of_step_cpu": timings["collate_step_batch"][1] / timings["train_step"][1],
        },
        "targets": TARGETS,
    }
    return results


def collator_at_revision(revision: str) -> type:
    """`DataCollatorForRandomMask` as committed at git `revision` (the module imports only torch, numpy and
    transformers, so it runs on its own)."""
    source = subprocess.run(["git", "show", f"{revision}:hf_genomics/data/collator_randommask.py"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType(f"collator_randommask_at_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:hf_genomics/data/collator_randommask.py", "exec"), module.__dict__)
    return module.DataCollatorForRandomMask


def against_revision(revision: str, quick: bool) -> dict:
    """Median CPU time per batch (pad + mask) of the collator at `revision` and of the current one, the two taking
    turns (alternating which goes first) on the same 32 x <= 510 bp batches."""
    tokenizer = KmerTokenizer(k=6, stride=1)
    batches = encoded_batches(tokenizer, 8, batch_size=32, max_length=510)
    collators = {revision: collator_at_revision(revision)(tokenizer, schedule="fixed", seed=0),
                 "current": DataCollatorForRandomMask(tokenizer, schedule="fixed", seed=0)}
    times = {name: [] for name in collators}
    for round_ in range(100 if quick else 1000):
        for name in sorted(collators, reverse=bool(round_ % 2)):
            batch = [dict(example) for example in batches[round_ % len(batches)]]
            start = time.process_time_ns()
            collators[name](batch)
            times[name].append(time.process_time_ns() - start)
    medians = {name: statistics.median(values) / 1e6 for name, values in times.items()}
    return {"revision": revision, "batches": len(times["current"]), "median_ms": medians,
            "current_over_revision": medians["current"] / medians[revision]}


def print_report(results: dict) -> None:
    timings, ratios = results["timings_s"], results["ratios"]
    n = results["batches"]
    print(
        f"{n} batches of shape {results['batch_shape']} (6-mers of <= 510 bp human chr1 chunks), best of repeats, "
        f"{torch.get_num_threads()} torch thread(s)\n"
    )
    print("| step | ours: batches/s | DNABERT: batches/s | speed-up (wall) | speed-up (CPU) |")
    print("|---|---|---|---|---|")
    rows = (("pad + mask", "collate_ours", "collate_dnabert"), ("mask only", "mask_ours", "mask_dnabert"))
    for label, ours, reference in rows:
        wall = timings[reference]["wall"] / timings[ours]["wall"]
        cpu = timings[reference]["cpu"] / timings[ours]["cpu"]
        ours_rate, reference_rate = n / timings[ours]["wall"], n / timings[reference]["wall"]
        print(f"| {label} | {ours_rate:.1f} | {reference_rate:.1f} | {wall:.1f}x | {cpu:.1f}x |")
    print()
    print("| default example batch (16 x <= 128 bp) | wall ms | CPU ms |")
    print("|---|---|---|")
    for label, name in (("collator", "collate_step_batch"), ("training step (fwd + bwd + AdamW)", "train_step")):
        print(f"| {label} | {1e3 * timings[name]['wall']:.2f} | {1e3 * timings[name]['cpu']:.2f} |")
    print()
    target = TARGETS["collator_vs_dnabert"]
    print(f"collator vs DNABERT masking: {ratios['collator_vs_dnabert']:.1f}x (target >= {target:.0f}x)")
    print(
        f"collator share of a training step: {ratios['collator_share_of_step']:.2%} "
        f"(CPU {ratios['collator_share_of_step_cpu']:.2%}; target < {TARGETS['collator_share_of_step']:.0%})"
    )
    if "against_revision" in results:
        against = results["against_revision"]
        medians = against["median_ms"]
        print(f"collator time per batch, current vs {against['revision']}: {against['current_over_revision']:.3f}x "
              f"(median CPU {medians['current']:.3f} ms vs {medians[against['revision']]:.3f} ms over "
              f"{against['batches']} alternating batches each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer batches and repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (DataLoader workers use 1)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--against", metavar="REV", help="also time the collator of git revision REV, batch by batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = run(args.quick)
    results["threads"] = args.threads
    if args.against:
        results["against_revision"] = against_revision(args.against, args.quick)
    print_report(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
