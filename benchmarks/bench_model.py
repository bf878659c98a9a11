"""BEACON-B speed and memory on CPU against transformers' BERT, measured in one run.

Training step (forward + backward + AdamW) tokens/s of `BeaconForMaskedLM` (ALiBi, default attention) vs
`BertForMaskedLM` (absolute positions, sdpa) with the same sizes, at L=512 unpadded and padded (lengths uniform in
[L/2, L], right padding, the same batch for both models, tokens/s counting real tokens only; target: ratio >= 0.97),
with the `alibi_blocked` path as an extra column. Peak extra memory of one inference forward at L=16,384: BEACON's
default path (and `alibi_blocked` where the default takes another) vs BERT with 16,384 learned positions (target:
<= 2x BERT's). With --long, also training at L=1024 and BEACON's inference memory at L=65,536.

The machine may be shared: the sides of every comparison run in alternating (interleaved) repetitions and the
medians are compared, so background load hits both equally.

    python benchmarks/bench_model.py            # default: 6 layers x 384 hidden, batch 8 (about 6 minutes)
    python benchmarks/bench_model.py --long     # also L=1024 training and 65,536-token inference (~30 minutes more)
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
PAD_ID = 1
MASK_ID = 9


def model_sizes(layers: int, hidden: int) -> dict:
    return dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        pad_token_id=PAD_ID,
    )


def build_beacon(layers: int, hidden: int, attn_implementation: str | None = None) -> BeaconForMaskedLM:
    """`attn_implementation=None`: the default ("alibi_auto": dense sdpa while the bias is small, blocked above)."""
    extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    torch.manual_seed(0)
    return BeaconForMaskedLM(BeaconConfig(**model_sizes(layers, hidden), **extra))


def build_bert(layers: int, hidden: int, max_length: int) -> BertForMaskedLM:
    torch.manual_seed(0)
    config = BertConfig(max_position_embeddings=max_length, attn_implementation="sdpa", **model_sizes(layers, hidden))
    return BertForMaskedLM(config)


def mlm_batch(batch_size: int, length: int, padded: bool = False) -> dict[str, torch.Tensor]:
    """Masked-LM batch of `batch_size` x `length`; `padded`: lengths uniform in [length/2, length], right-padded,
    with `attention_mask` (15% of the real tokens masked either way)."""
    generator = torch.Generator().manual_seed(length + padded)
    input_ids = torch.randint(4, 8, (batch_size, length), generator=generator)
    lengths = torch.full((batch_size,), length)
    if padded:
        lengths = torch.randint(length // 2, length + 1, (batch_size,), generator=generator)
    real = torch.arange(length)[None, :] < lengths[:, None]
    input_ids[:, 0] = 0
    input_ids[torch.arange(batch_size), lengths - 1] = 2
    masked = (torch.rand(batch_size, length, generator=generator) < 0.15) & real
    batch = {"input_ids": input_ids.masked_fill(masked, MASK_ID).masked_fill(~real, PAD_ID),
             "labels": torch.where(masked, input_ids, -100)}
    if padded:
        batch["attention_mask"] = real.long()
    return batch


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


def default_path(model: BeaconForMaskedLM, batch: dict[str, torch.Tensor]) -> str:
    """The attention path BEACON's default ("alibi_auto") takes for this batch ('?' if the model file does not say)."""
    from hf_genomics.models.beacon import modeling_beacon

    shape = batch["input_ids"].shape
    try:
        sequence_ids = modeling_beacon.attention_sequence_ids(batch.get("attention_mask"), None, shape, model.device)
        return modeling_beacon.resolve_attention_implementation(model.config, model.device, *shape, sequence_ids)
    except (AttributeError, TypeError):  # informative only
        return "?"


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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


def memory_in_child(layers: int, hidden: int, length: int, models: str) -> dict:
    """Run the memory measurements in a fresh process where glibc returns every large block to the OS on free
    (fixed mmap threshold), so resident memory follows live tensors and one model's freed memory cannot hide the
    next one's use. `models`: comma-separated of bert, beacon (default path), alibi_blocked."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    command = [sys.executable, __file__, "--memory-child", str(layers), str(hidden), str(length), models]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _memory_child(layers: int, hidden: int, length: int, models: str) -> None:
    results = {}
    for name in models.split(","):
        start = time.perf_counter()
        if name == "bert":
            model, label = build_bert(layers, hidden, length), "BERT (sdpa)"
        else:
            model = build_beacon(layers, hidden, None if name == "beacon" else name)
            label = f"BEACON (default -> {default_path(model, {'input_ids': torch.zeros(1, length)})})" \
                if name == "beacon" else f"BEACON ({name})"
        mib = peak_inference_memory(model, length)
        results[name] = {"label": label, "mib": mib, "seconds": time.perf_counter() - start}
        del model
    print(json.dumps(results))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings (2 layers x 128, batch 2) for a smoke run")
    parser.add_argument("--long", action="store_true",
                        help="also training at L=1024 and BEACON's inference memory at 65,536 tokens (half an hour "
                        "on 2 cores)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per side (default 3, quick 2)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    if args.quick:
        layers, hidden, batch_size, length, long_length, memory_length, long_memory_length, repeats = \
            2, 128, 2, 128, 256, 2048, 8192, 2
    else:
        layers, hidden, batch_size, length, long_length, memory_length, long_memory_length, repeats = \
            6, 384, 8, 512, 1024, 16384, 65536, 3
    lengths = (length, long_length) if args.long or args.quick else (length,)
    repeats = args.repeats or repeats
    started = time.perf_counter()
    torch.set_num_threads(torch.get_num_threads())
    results = {
        "settings": dict(layers=layers, hidden=hidden, batch_size=batch_size, repeats=repeats,
                         threads=torch.get_num_threads()),
        "training": [],
    }

    beacon, bert, blocked = build_beacon(layers, hidden), build_bert(layers, hidden, max(lengths)), \
        build_beacon(layers, hidden, "alibi_blocked")
    blocked.load_state_dict(beacon.state_dict())
    # (L, padded): the first length unpadded and padded, the longer one unpadded; the blocked path at the first.
    for run_length, padded in [(length, False), (length, True)] + [(long_length, False)] * (len(lengths) > 1):
        batch = mlm_batch(batch_size, run_length, padded)
        models = {"beacon": beacon, "bert": bert}
        if run_length == length:
            models["alibi_blocked"] = blocked
        seconds = interleaved_training_times(models, batch, repeats)
        real_tokens = int(batch["attention_mask"].sum()) if padded else batch_size * run_length
        row = {"length": run_length, "padded": padded, "real_tokens": real_tokens,
               "beacon_path": default_path(beacon, batch),
               **{f"{name}_tokens_per_s": real_tokens / s for name, s in seconds.items()}}
        row["beacon_vs_bert"] = seconds["bert"] / seconds["beacon"]
        if "alibi_blocked" in seconds:
            row["blocked_vs_bert"] = seconds["bert"] / seconds["alibi_blocked"]
        results["training"].append(row)
    del beacon, bert, blocked

    # Where the default takes the blocked path anyway, measuring both would repeat the slowest forward.
    default_at_length = default_path(build_beacon(1, hidden), {"input_ids": torch.zeros(1, memory_length)})
    memory_models = "bert,beacon" + ("" if default_at_length == "alibi_blocked" else ",alibi_blocked")
    memory = memory_in_child(layers, hidden, memory_length, memory_models)
    results["inference_memory"] = {"length": memory_length, **memory}
    if args.long:
        results["long_inference_memory"] = {"length": long_memory_length,
                                            **memory_in_child(layers, hidden, long_memory_length, "beacon")}

    print(f"\nCPU, {layers} layers x {hidden} hidden, batch {batch_size}, {torch.get_num_threads()} threads, "
          f"median of {repeats} interleaved training steps (forward, backward, AdamW)\n")
    print("| L | data | BEACON (default) tok/s | BERT (sdpa) tok/s | ratio BEACON/BERT | BEACON alibi_blocked tok/s "
          "| blocked/BERT |")
    print("|---|---|---|---|---|---|---|")
    for row in results["training"]:
        data = f"padded ({row['real_tokens'] / (batch_size * row['length']):.0%} real)" if row["padded"] else "unpadded"
        blocked_rate = f"{row['alibi_blocked_tokens_per_s']:.0f}" if "blocked_vs_bert" in row else "-"
        blocked_ratio = f"{row['blocked_vs_bert']:.3f}x" if "blocked_vs_bert" in row else "-"
        print(f"| {row['length']} | {data} | {row['beacon_tokens_per_s']:.0f} ({row['beacon_path']}) | "
              f"{row['bert_tokens_per_s']:.0f} | {row['beacon_vs_bert']:.3f}x | {blocked_rate} | {blocked_ratio} |")
    print("\nPadded: lengths uniform in [L/2, L], right padding, the same batch for both models; tok/s counts real "
          "tokens.")

    bert_mib = memory["bert"]["mib"]
    print("\nPeak extra memory of one inference forward (batch 1, resident memory, fresh process):\n")
    print("| model | L | MiB | vs BERT | seconds |")
    print("|---|---|---|---|---|")
    for name, entry in memory.items():
        ratio = "-" if name == "bert" else f"{entry['mib'] / bert_mib:.2f}x"
        print(f"| {entry['label']} | {memory_length:,} | {entry['mib']:.0f} | {ratio} | {entry['seconds']:.0f} |")
    if args.long:
        entry = results["long_inference_memory"]["beacon"]
        print(f"| {entry['label']} | {long_memory_length:,} | {entry['mib']:.0f} | - | {entry['seconds']:.0f} |")

    first = [row for row in results["training"] if row["length"] == length]
    ratios = ", ".join(f"{'padded' if row['padded'] else 'unpadded'} {row['beacon_vs_bert']:.3f}x" for row in first)
    print(f"\nBEACON/BERT training throughput at L={length}: {ratios} (target >= 0.97x)")
    print(f"BEACON/BERT inference memory at L={memory_length:,}: {memory['beacon']['mib'] / bert_mib:.2f}x "
          f"(target <= 2x)")
    if args.long:
        print(f"BEACON inference at L={long_memory_length:,}: "
              f"{results['long_inference_memory']['beacon']['mib']:,.0f} MiB peak extra memory")
    else:
        print(f"L={long_memory_length:,} inference" + ("" if args.quick else f" and L={long_length} training")
              + " not measured: pass --long.")
    print(f"(This run took {(time.perf_counter() - started) / 60:.1f} min.)")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--memory-child":
        _memory_child(*map(int, sys.argv[2:5]), sys.argv[5])
    else:
        main()
