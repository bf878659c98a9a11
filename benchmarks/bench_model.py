"""BEACON-B speed and memory on CPU against transformers' BERT, measured in one run.

Training step (forward + backward + AdamW) tokens/s of `BeaconForMaskedLM` (ALiBi, sdpa) vs `BertForMaskedLM`
(absolute positions, sdpa) with the same sizes, at L=512 and L=1024 (target: ratio >= 0.95); `sdpa` vs `eager`
for our model; peak extra memory of one inference forward at L=4096.

The machine may be shared: the two sides of every comparison run in alternating (interleaved) repetitions and
the medians are compared, so background load hits both equally.

    python benchmarks/bench_model.py            # default: 6 layers x 384 hidden, batch 8 (about 3 minutes)
    python benchmarks/bench_model.py --quick    # smaller settings for a smoke run
    python benchmarks/bench_model.py --json results.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import torch
from transformers import BertConfig, BertForMaskedLM

from hf_genomics import BeaconConfig, BeaconForMaskedLM

VOCAB_SIZE = 10
MASK_ID = 9


def build_models(layers: int, hidden: int, max_length: int, attn_implementation: str = "sdpa"):
    sizes = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        pad_token_id=1,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    beacon = BeaconForMaskedLM(BeaconConfig(**sizes))
    bert = BertForMaskedLM(BertConfig(max_position_embeddings=max_length, **sizes))
    return beacon, bert


def mlm_batch(batch_size: int, length: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(length)
    input_ids = torch.randint(4, 8, (batch_size, length), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 0, 2
    masked = torch.rand(batch_size, length, generator=generator) < 0.15
    labels = torch.where(masked, input_ids, -100)
    return {"input_ids": input_ids.masked_fill(masked, MASK_ID), "labels": labels}


def interleaved_training_times(models: dict, batch: dict, repeats: int) -> dict[str, float]:
    """Median seconds per training step of each model, the models taking turns at every repetition."""
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}

    def step(name):
        model, optimizer = models[name], optimizers[name]
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    for name in models:  # warm-up (allocator, optimizer state)
        models[name].train()
        step(name)
    times = {name: [] for name in models}
    for repeat in range(repeats):
        order = list(models) if repeat % 2 == 0 else list(reversed(models))
        for name in order:
            times[name].append(step(name))
    return {name: statistics.median(values) for name, values in times.items()}


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def peak_inference_memory(model, length: int) -> float:
    """Peak resident memory above the pre-forward level (MiB) during one no-grad forward of one sequence."""
    model.eval()
    input_ids = mlm_batch(1, length)["input_ids"]
    baseline, peak, running = resident_bytes(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with torch.no_grad():
            model(input_ids=input_ids)
    finally:
        running[0] = False
        sampler.join()
    return (max(peak[0], resident_bytes()) - baseline) / 2**20


def memory_in_child(layers: int, hidden: int, length: int) -> dict[str, float]:
    """Run the memory measurements in a fresh process where glibc returns every large block to the OS on free
    (fixed mmap threshold), so resident memory follows live tensors and one model's freed memory cannot hide the
    next one's use."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    command = [sys.executable, __file__, "--memory-child", str(layers), str(hidden), str(length)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _memory_child(layers: int, hidden: int, length: int) -> None:
    beacon, bert = build_models(layers, hidden, length)
    beacon_eager, _ = build_models(layers, hidden, length, attn_implementation="eager")
    models = {"beacon_sdpa": beacon, "bert_sdpa": bert, "beacon_eager": beacon_eager}
    print(json.dumps({name: peak_inference_memory(model, length) for name, model in models.items()}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings (2 layers x 128, batch 2) for a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per side (default 3, quick 2)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    if args.quick:
        layers, hidden, batch_size, lengths, memory_length, repeats = 2, 128, 2, (128, 256), 1024, 2
    else:
        layers, hidden, batch_size, lengths, memory_length, repeats = 6, 384, 8, (512, 1024), 4096, 3
    repeats = args.repeats or repeats
    torch.set_num_threads(torch.get_num_threads())
    results = {
        "settings": dict(layers=layers, hidden=hidden, batch_size=batch_size, repeats=repeats, threads=torch.get_num_threads()),
        "training": [],
    }

    beacon, bert = build_models(layers, hidden, max(lengths))
    beacon_eager, _ = build_models(layers, hidden, max(lengths), attn_implementation="eager")
    beacon_eager.load_state_dict(beacon.state_dict())
    for length in lengths:
        batch = mlm_batch(batch_size, length)
        models = {"beacon_sdpa": beacon, "bert_sdpa": bert}
        if length == lengths[0]:
            models["beacon_eager"] = beacon_eager
        seconds = interleaved_training_times(models, batch, repeats)
        row = {"length": length, **{f"{name}_tokens_per_s": batch_size * length / s for name, s in seconds.items()}}
        row["beacon_vs_bert"] = seconds["bert_sdpa"] / seconds["beacon_sdpa"]
        if "beacon_eager" in seconds:
            row["sdpa_vs_eager"] = seconds["beacon_eager"] / seconds["beacon_sdpa"]
        results["training"].append(row)


    memory = memory_in_child(layers, hidden, memory_length)
    results["inference_memory_mib"] = {"length": memory_length, **memory}

    print(f"\nCPU, {layers} layers x {hidden} hidden, batch {batch_size}, {torch.get_num_threads()} threads, "
          f"median of {repeats} interleaved steps\n")
    print("| L | BEACON (ALiBi, sdpa) tok/s | BERT (sdpa) tok/s | ratio BEACON/BERT | BEACON eager tok/s | sdpa/eager |")
    print("|---|---|---|---|---|---|")
    for row in results["training"]:
        eager = f"{row['beacon_eager_tokens_per_s']:.0f}" if "beacon_eager_tokens_per_s" in row else "-"
        speedup = f"{row['sdpa_vs_eager']:.2f}x" if "sdpa_vs_eager" in row else "-"
        print(f"| {row['length']} | {row['beacon_sdpa_tokens_per_s']:.0f} | {row['bert_sdpa_tokens_per_s']:.0f} | "
              f"{row['beacon_vs_bert']:.3f}x | {eager} | {speedup} |")
    print(f"\nPeak extra memory of one inference forward at L={memory_length} (batch 1):\n")
    print("| model | MiB |")
    print("|---|---|")
    for name, mib in memory.items():
        print(f"| {name} | {mib:.0f} |")
    ratios = [row["beacon_vs_bert"] for row in results["training"]]
    print(f"\nBEACON/BERT training throughput: {', '.join(f'{r:.3f}x' for r in ratios)} (target >= 0.95x)")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--memory-child":
        _memory_child(*map(int, sys.argv[2:]))
    else:
        main()
