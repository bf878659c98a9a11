"""BEACON-B at GPU scale, in one prepared run: correctness of every attention path, training throughput and MFU
against transformers' BERT, peak memory at long lengths, and every example for ~30 steps with --bf16.

    python benchmarks/bench_gpu.py                       # one GPU, <= 8 minutes (--budget 480), writes results_gpu.md
    python benchmarks/bench_gpu.py --quick --output r.md # CPU smoke run (tiny sizes, < 1 minute; the test suite's)
    python benchmarks/bench_gpu.py --sections correctness,throughput --budget 300

Sections, in priority order (each stops at its share of the time budget; what is left over passes on):

1. correctness: every `attn_implementation` (eager, sdpa, alibi_blocked, alibi_flex, auto) against a float64 CPU
   reference (eager, each sequence alone, unpadded), on a right-padded batch and on the same sequences packed
   (`DataCollatorForPacking`, position ids restarting at 0), in fp32 and bf16 autocast. Error = max|out - ref| /
   max|ref| over the real tokens' `last_hidden_state`, and the same over all parameter gradients of
   sum(out * w) (w fixed, random). Tolerances: 1e-5 fp32, 1e-2 bf16. The exit status is 1 if a check fails.
2. throughput: training steps (forward, backward, AdamW, bf16 autocast) of `BeaconForMaskedLM` against
   `BertForMaskedLM` (sdpa) at BERT-base size (12 x 768, 12 heads, vocabulary 10), 32 x 512 and 8 x 2048 tokens,
   unpadded and padded (lengths uniform in [L/2, L], tokens/s counting real tokens only), and BEACON on the padded
   batch packed into one row. MFU = useful FLOPs / step time / peak (989 TFLOP/s, H100/H200 bf16 dense), with
   useful FLOPs = sum over sequences of 6 * N * l + 12 * layers * hidden * l^2 (N: non-embedding parameters, l: the
   sequence's real length; PaLM's formula, attention counted within each sequence only).
3. memory: peak `torch.cuda.max_memory_allocated` above the level before the call (weights and AdamW state excluded),
   batch 1, after a warm-up call, of an inference forward (no_grad, bf16 autocast) at 4k, 16k and 64k tokens and of
   one training step (forward, backward, AdamW) at 4k, 16k and 64k, BEACON against BERT with
   max_position_embeddings = 65,536.
4. examples: each `examples/run_*.py` on tiny data (the argument lists of tests/test_resume.py) for 30 steps with
   --bf16 in a subprocess; ok/failed, steps/s as Trainer reports it, wall time (start-up included).

Every item runs in try/except: an error, an out-of-memory or the time budget is written in its table cell and the
run carries on. The report is rewritten after every row, so a run killed from outside leaves what it measured.
With --quick (CPU, 2 layers x 64, lengths 64-128) memory is the resident-set growth of this process (approximate)
and the examples are skipped unless --sections names them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# The checkout's package, also where it is not pip-installed (a bare GPU machine with the repository copied over).
sys.path.insert(0, str(REPO))
DEFAULT_OUTPUT = REPO / "benchmarks" / "results_gpu.md"
SECTIONS = ("correctness", "throughput", "memory", "examples")
PATHS = ("eager", "sdpa", "alibi_blocked", "alibi_flex", "auto")
TOLERANCE = {"fp32": 1e-5, "bf16": 1e-2}
H200_BF16_DENSE_TFLOPS = 989.0
VOCAB_SIZE, PAD_ID, CLS_ID, EOS_ID, MASK_ID = 10, 1, 0, 2, 9
# Each section may use at most this share of the budget, so that a slow one (compilation) leaves time to the rest.
SECTION_SHARE = {"correctness": 0.32, "throughput": 0.34, "memory": 0.24, "examples": 1.0}


@dataclass(frozen=True)
class Settings:
    quick: bool
    device: torch.device
    correctness_model: dict
    correctness_lengths: tuple[int, ...]  # packs (max_length = the longest) into a full row, a lone row, a padded row
    model: dict  # throughput and memory
    throughput_shapes: tuple[tuple[int, int], ...]  # (batch, length)
    warmup_steps: int
    timed_steps: int
    inference_lengths: tuple[int, ...]
    training_lengths: tuple[int, ...]
    amp_dtype: torch.dtype | None  # throughput and memory
    peak_tflops: float | None


def settings_for(quick: bool, device: torch.device, peak_tflops: float | None) -> Settings:
    tiny = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128)
    if quick:
        return Settings(quick, device, tiny, (75, 53, 128, 37, 62), tiny, ((4, 64), (2, 128)), 1, 3,
                        (2048,), (1024,), None, peak_tflops)
    base = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072)
    small = dict(base, num_hidden_layers=4)
    return Settings(quick, device, small, (600, 424, 1024, 300, 500), base, ((32, 512), (8, 2048)), 3, 15,
                    (4096, 16384, 65536), (4096, 16384, 65536), torch.bfloat16,
                    H200_BF16_DENSE_TFLOPS if peak_tflops is None else peak_tflops)


# ---------------------------------------------------------------------------------------------------------------
# Report: markdown blocks, printed as they come and rewritten to the output file after every row.


class Table:
    def __init__(self, report: Report, columns: list[str]):
        self.report, self.columns, self.rows = report, columns, []
        print(f"\n| {' | '.join(columns)} |\n|{'---|' * len(columns)}", flush=True)

    def row(self, *cells) -> None:
        cells = [cell_text(cell) for cell in cells]
        self.rows.append(cells)
        print(f"| {' | '.join(cells)} |", flush=True)
        self.report.write()

    def render(self) -> str:
        lines = [f"| {' | '.join(self.columns)} |", f"|{'---|' * len(self.columns)}"]
        return "\n".join(lines + [f"| {' | '.join(cells)} |" for cells in self.rows])


class Report:
    def __init__(self, path: Path):
        self.path, self.blocks = path, []

    def text(self, markdown: str) -> None:
        self.blocks.append(markdown.strip())
        print(f"\n{markdown.strip()}", flush=True)
        self.write()

    def table(self, columns: list[str]) -> Table:
        table = Table(self, columns)
        self.blocks.append(table)
        self.write()
        return table

    def write(self) -> None:
        body = "\n\n".join(block if isinstance(block, str) else block.render() for block in self.blocks)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(body + "\n")


def cell_text(value) -> str:
    text = value if isinstance(value, str) else format(value)
    text = " ".join(text.replace("|", "/").split())
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------------------------------------------------------
# Time budget: every item runs under an alarm set to what is left of its section's share.


class OutOfTime(BaseException):
    """Raised by the alarm; a BaseException so that library code catching Exception does not swallow it."""


@contextlib.contextmanager
def alarm_after(seconds: float):
    def handler(signum, frame):
        raise OutOfTime()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Outcome:
    """The result of one attempted item: `value` when it ran, else `note` says why not (error, OOM, time)."""

    def __init__(self, value=None, note: str | None = None):
        self.value, self.note = value, note

    @property
    def ok(self) -> bool:
        return self.note is None


def attempt(function, deadline: float, minimum: float = 1.0) -> Outcome:
    left = deadline - time.monotonic()
    if left < minimum:
        return Outcome(note="skipped: time budget")
    try:
        with alarm_after(left):
            return Outcome(function())
    except (OutOfTime, subprocess.TimeoutExpired):
        note = "stopped: time budget"
    except torch.OutOfMemoryError:
        note = "OOM"
    except Exception as error:  # noqa: BLE001 - recorded in the report, the run carries on
        traceback.print_exc()
        note = f"error: {type(error).__name__}: {error}"
    release_memory()
    return Outcome(note=note)


def release_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------------------
# Models and batches.


def beacon_config(model: dict, path: str):
    from hf_genomics import BeaconConfig

    extra = {} if path == "auto" else {"attn_implementation": path}
    return BeaconConfig(vocab_size=VOCAB_SIZE, pad_token_id=PAD_ID, **model, **extra)


def beacon_mlm(model: dict, path: str, device: torch.device):
    from hf_genomics import BeaconForMaskedLM

    torch.manual_seed(0)
    with torch.device(device):
        return BeaconForMaskedLM(beacon_config(model, path))


def bert_mlm(model: dict, max_length: int, device: torch.device):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB_SIZE, pad_token_id=PAD_ID, max_position_embeddings=max_length,
                        attn_implementation="sdpa", **model)
    with torch.device(device):
        return BertForMaskedLM(config)


def non_embedding_parameters(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in f".{name}")


def random_sequences(lengths, generator: torch.Generator) -> list[torch.Tensor]:
    sequences = []
    for length in lengths:
        ids = torch.randint(4, 8, (length,), generator=generator)
        ids[0], ids[-1] = CLS_ID, EOS_ID
        sequences.append(ids)
    return sequences


def padded_batch(sequences: list[torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    input_ids = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)], attention_mask[row, : len(ids)] = ids, 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def mlm_batch(lengths: list[int], width: int, seed: int) -> dict[str, torch.Tensor]:
    """A right-padded masked-LM batch (15% of the real tokens masked); no attention_mask when nothing is padded."""
    generator = torch.Generator().manual_seed(seed)
    batch = padded_batch(random_sequences(lengths, generator), width)
    masked = (torch.rand(batch["input_ids"].shape, generator=generator) < 0.15) & batch["attention_mask"].bool()
    batch["labels"] = torch.where(masked, batch["input_ids"], -100)
    batch["input_ids"] = batch["input_ids"].masked_fill(masked, MASK_ID)
    if bool(batch["attention_mask"].all()):
        del batch["attention_mask"]
    return batch


def pack(batch: dict[str, torch.Tensor], max_length: int | None, pack_labels: bool) -> dict[str, torch.Tensor]:
    from hf_genomics.data.collator_packing import DataCollatorForPacking

    collator = DataCollatorForPacking(lambda features: features, max_length=max_length, pack_labels=pack_labels,
                                      pad_token_id=PAD_ID)
    return collator.pack(batch)


def resolved_path(model, batch: dict[str, torch.Tensor]) -> str:
    """What the default ("alibi_auto") picks for this batch, if the model file says (else '?')."""
    try:
        from hf_genomics.models.beacon import modeling_beacon as mb

        shape = batch["input_ids"].shape
        ids = mb.attention_sequence_ids(batch.get("attention_mask"), batch.get("position_ids"), shape, model.device)
        return mb.resolve_attention_implementation(model.config, model.device, shape[0], shape[1], ids)
    except Exception:  # noqa: BLE001 - informative only
        return "?"


def label(path: str, model=None, batch=None) -> str:
    if path != "auto" or model is None:
        return path
    return f"auto (-> {resolved_path(model, batch)})"


# ---------------------------------------------------------------------------------------------------------------
# 1. Correctness.


def relative_error(values, references) -> float:
    """max |value - reference| / max |reference| over paired tensors, in float64 on the CPU."""
    difference = max(float((v.detach().double().cpu() - r).abs().max()) for v, r in zip(values, references))
    return difference / max(float(r.abs().max()) for r in references)


def segments(packed: dict[str, torch.Tensor]) -> list[tuple[int, int, int]]:
    """(row, start, end) of every sequence of a packed batch, in packed order."""
    found = []
    for row, (positions, mask) in enumerate(zip(packed["position_ids"].tolist(), packed["attention_mask"].tolist())):
        starts = [column for column, (p, m) in enumerate(zip(positions, mask)) if p == 0 and m == 1]
        end_of_row = sum(mask)
        found += [(row, start, end) for start, end in zip(starts, starts[1:] + [end_of_row])]
    return found


def section_correctness(report: Report, settings: Settings, deadline: float) -> bool:
    from hf_genomics import BeaconModel

    device, model = settings.device, settings.correctness_model
    lengths = list(settings.correctness_lengths)
    width = max(lengths)
    sequences = random_sequences(lengths, torch.Generator().manual_seed(0))
    weights = [torch.randn(len(ids), model["hidden_size"], generator=torch.Generator().manual_seed(i),
                           dtype=torch.float64) for i, ids in enumerate(sequences)]

    torch.manual_seed(0)
    reference = BeaconModel(beacon_config(model, "eager"), add_pooling_layer=False).double().eval()
    reference_outputs = []
    for ids, weight in zip(sequences, weights):  # one sequence at a time: no padding, no packing involved
        output = reference(input_ids=ids[None]).last_hidden_state[0]
        (output * weight).sum().backward()
        reference_outputs.append(output.detach())
    reference_grads = {n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None}
    state = {name: tensor.float() for name, tensor in reference.state_dict().items()}

    padded = padded_batch(sequences, width)
    packed = pack({**padded, "labels": torch.arange(len(sequences))}, max_length=width, pack_labels=False)
    order = packed.pop("labels").tolist()  # the sequence in each packed slot
    layouts = {
        "padded": (padded, [(row, 0, len(ids)) for row, ids in enumerate(sequences)], list(range(len(sequences)))),
        "packed": (packed, segments(packed), order),
    }
    rows = {name: len(batch["input_ids"]) for name, (batch, _, _) in layouts.items()}
    report.text(
        f"## 1. Correctness against a float64 CPU reference\n\n"
        f"BEACON {model['num_hidden_layers']} x {model['hidden_size']} ({model['num_attention_heads']} heads), "
        f"sequences of {', '.join(map(str, lengths))} tokens: padded ({rows['padded']} x {width}) and packed "
        f"({rows['packed']} rows of <= {width}, `DataCollatorForPacking`), on {device.type}. Reference: eager "
        "attention in float64 on the CPU, each sequence alone. Error: max|out - ref| / max|ref| over the real tokens "
        "of `last_hidden_state` (forward) and over all parameter gradients of sum(out * w) (w fixed, random)."
        + (" The blocked path runs with small query blocks so that every sequence spans several." if settings.quick
           else "")
    )
    table = report.table(["path", "precision", "layout", "forward error", "gradient error", "tolerance", "result"])
    failures = not_run = 0
    for path in PATHS:
        for precision in ("fp32", "bf16"):
            for layout, (batch, spans, slots) in layouts.items():
                outcome = attempt(lambda: check_path(path, precision, batch, spans, slots, state, weights,
                                                     reference_outputs, reference_grads, settings), deadline)
                tolerance = TOLERANCE[precision]
                if not outcome.ok:
                    out_of_time = "time budget" in outcome.note  # not run, or cut short: no verdict
                    failures += not out_of_time
                    not_run += out_of_time
                    table.row(path, precision, layout, outcome.note, "-", f"{tolerance:.0e}",
                              "not run" if out_of_time else "FAIL")
                    continue
                name, forward, gradient = outcome.value
                passed = forward <= tolerance and (gradient is None or gradient <= tolerance)
                failures += not passed
                table.row(name, precision, layout, f"{forward:.1e}",
                          "n/a (no flex backward on CPU)" if gradient is None else f"{gradient:.1e}",
                          f"{tolerance:.0e}", "ok" if passed else "FAIL")
    verdict = f"{failures} check(s) failed" if failures else "every check that ran passed"
    report.text(f"Correctness: {verdict}" + (f"; {not_run} not run (time budget)." if not_run else "."))
    return failures == 0


@contextlib.contextmanager
def small_blocks(enabled: bool):
    """Force query blocks of 16 on the blocked path (its bias-size budget is a module constant)."""
    from hf_genomics.models.beacon import modeling_beacon

    name = "BLOCKED_ATTENTION_BIAS_ELEMENTS"
    saved = getattr(modeling_beacon, name, None)
    if enabled and saved is not None:
        setattr(modeling_beacon, name, 2**10)
    try:
        yield
    finally:
        if saved is not None:
            setattr(modeling_beacon, name, saved)


def check_path(path, precision, batch, spans, slots, state, weights, reference_outputs, reference_grads, settings):
    from hf_genomics import BeaconModel

    device = settings.device
    model = BeaconModel(beacon_config(settings.correctness_model, path), add_pooling_layer=False)
    model.load_state_dict(state)
    model.to(device).eval()
    inputs = {key: value.to(device) for key, value in batch.items()}
    name = label(path, model, inputs)
    forward_only = device.type != "cuda" and (path == "alibi_flex" or name.endswith("alibi_flex)"))
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with small_blocks(settings.quick):
        with amp, torch.set_grad_enabled(not forward_only):
            hidden = model(**inputs).last_hidden_state
        outputs = [hidden[row, start:end] for row, start, end in spans]
        forward = relative_error(outputs, [reference_outputs[slot] for slot in slots])
        if forward_only:
            return name, forward, None
        loss = sum((out.float() * weights[slot].to(device, torch.float32)).sum() for out, slot in zip(outputs, slots))
        loss.backward()
    grads = dict(model.named_parameters())
    gradient = relative_error([grads[n].grad for n in reference_grads], list(reference_grads.values()))
    return name, forward, gradient


# ---------------------------------------------------------------------------------------------------------------
# 2. Training throughput and MFU.


def train_step_seconds(model, batch: dict, settings: Settings) -> float:
    """Median seconds of a training step (forward, backward, AdamW) after warm-up steps (compilation, allocator)."""
    device = settings.device
    batch = {key: value.to(device) for key, value in batch.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=settings.amp_dtype or torch.float32,
                            enabled=settings.amp_dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()

    for _ in range(settings.warmup_steps):
        step()
    times = []
    for _ in range(settings.timed_steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def useful_flops(lengths: list[int], parameters: int, model: dict) -> float:
    attention = 12 * model["num_hidden_layers"] * model["hidden_size"]
    return float(sum(6 * parameters * length + attention * length * length for length in lengths))


def section_throughput(report: Report, settings: Settings, deadline: float) -> None:
    device, model = settings.device, settings.model
    precision = "bf16 autocast" if settings.amp_dtype is not None else "fp32"
    report.text(
        f"## 2. Training throughput\n\n"
        f"`BeaconForMaskedLM` vs `BertForMaskedLM` (sdpa), {model['num_hidden_layers']} x {model['hidden_size']}, "
        f"{model['num_attention_heads']} heads, vocabulary {VOCAB_SIZE}, {precision}, AdamW; median of "
        f"{settings.timed_steps} steps after {settings.warmup_steps} warm-up steps, the same batch every step. "
        "Padded: lengths uniform in [L/2, L], right padding, tokens/s counts real tokens only (both models); packed: "
        "the padded batch's sequences in one row (`DataCollatorForPacking(max_length=None)`). MFU: useful FLOPs "
        "(sum over sequences of 6 N l + 12 layers hidden l^2, N = non-embedding parameters) / time / "
        + (f"{settings.peak_tflops:g} TFLOP/s." if settings.peak_tflops else "peak (none on CPU: MFU not shown).")
        + " Default dropout (0.1) in both models; the flex path applies no attention dropout."
    )
    table = report.table(["batch x L", "data", "model (attention)", "real tokens/s", "vs BERT", "MFU", "target"])
    targets = {("unpadded", 512): 1.0, ("unpadded", 2048): 0.95, ("packed", 512): 1.25, ("packed", 2048): 1.25}
    data = {}
    for batch_size, length in settings.throughput_shapes:
        lengths_padded = torch.randint(length // 2, length + 1, (batch_size,),
                                       generator=torch.Generator().manual_seed(length)).tolist()
        padded = mlm_batch(lengths_padded, length, seed=length + 1)
        data[length] = {
            "unpadded": ([length] * batch_size, mlm_batch([length] * batch_size, length, seed=length)),
            "padded": (lengths_padded, padded),
            "packed": (lengths_padded, pack(padded, max_length=None, pack_labels=True)),
        }
    # The rows with targets first, at every shape, then the others: the budget may not reach the end.
    first = [("unpadded", "bert"), ("unpadded", "auto"), ("padded", "bert"), ("packed", "auto")]
    then = [("padded", "auto"), ("unpadded", "alibi_blocked")] + ([] if settings.quick else [("unpadded", "sdpa")])
    runs = [(shape, *run) for part in (first, then) for shape in settings.throughput_shapes for run in part]
    bert_rate = {}
    for (batch_size, length), kind, which in runs:
        lengths, batch = data[length][kind]

        def measure():
            net = bert_mlm(model, length, device) if which == "bert" else beacon_mlm(model, which, device)
            name = "BERT (sdpa)" if which == "bert" else f"BEACON ({label(which, net, batch)})"
            seconds = train_step_seconds(net, batch, settings)
            return name, seconds, non_embedding_parameters(net)

        outcome = attempt(measure, deadline)
        shown = "BERT (sdpa)" if which == "bert" else f"BEACON ({which})"
        if not outcome.ok:
            table.row(f"{batch_size} x {length}", kind, shown, outcome.note, "-", "-", "-")
            continue
        name, seconds, parameters = outcome.value
        rate = sum(lengths) / seconds
        if which == "bert":
            bert_rate[length, kind] = rate
        baseline = bert_rate.get((length, "padded" if kind == "packed" else kind))
        ratio = "-" if which == "bert" or baseline is None else f"{rate / baseline:.3f}x"
        mfu = "-" if not settings.peak_tflops else \
            f"{useful_flops(lengths, parameters, model) / seconds / (settings.peak_tflops * 1e12):.1%}"
        target = targets.get((kind, length)) if which == "auto" else None
        target = f">= {target}x" if target else ""
        if kind == "packed":
            name += f", {len(batch['input_ids'])} row(s) of {batch['input_ids'].shape[1]}"
        table.row(f"{batch_size} x {length}", kind, name, f"{rate:,.0f}", ratio, mfu, target)
        release_memory()


# ---------------------------------------------------------------------------------------------------------------
# 3. Memory.


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes(function, device: torch.device) -> tuple[int, int]:
    """(peak above the level before the call, absolute peak) in bytes: CUDA allocator statistics on GPU, sampled
    resident memory of this process elsewhere (approximate: freed memory the allocator keeps hides reuse)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        function()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return peak - before, peak
    before, peak, running = resident_bytes(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        function()
    finally:
        running[0] = False
        sampler.join()
    peak[0] = max(peak[0], resident_bytes())
    return peak[0] - before, peak[0]


def return_freed_memory_to_the_system() -> None:
    """glibc: serve every block over 64 KiB by mmap and unmap it on free (as MALLOC_MMAP_THRESHOLD_=65536 does), so
    that resident memory follows live tensors instead of keeping freed ones."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD


def section_memory(report: Report, settings: Settings, deadline: float) -> None:
    device, model = settings.device, settings.model
    how = "`torch.cuda.max_memory_allocated` above the level before the call" if device.type == "cuda" else \
        "Growth of this process's resident memory (sampled; `bench_model.py` measures CPU memory at scale)"
    report.text(
        f"## 3. Peak memory\n\n{how}; batch 1, {model['num_hidden_layers']} x {model['hidden_size']}, "
        + ("bf16 autocast" if settings.amp_dtype is not None else "fp32")
        + ". Inference: one no-grad forward. Training: forward, backward and an AdamW step. Each measured after one "
        "warm-up call (compilation), so AdamW's state counts with the weights in the level before; peak total is "
        "everything allocated. BERT has max_position_embeddings = the longest length. Target: BEACON's inference at "
        "16,384 tokens <= 2x BERT's."
    )
    table = report.table(["mode", "L", "model (attention)", "peak extra MiB", "peak total GiB", "vs BERT"])
    longest = max(settings.inference_lengths + settings.training_lengths)
    amp = dict(device_type=device.type, dtype=settings.amp_dtype or torch.float32,
               enabled=settings.amp_dtype is not None)
    # Model by model (each built once), BERT first (the ratios need its numbers), the targets' rows before the others.
    inference = [("inference", length, which) for which in ("bert", "auto", "alibi_blocked", "sdpa")
                 for length in settings.inference_lengths]
    training = [("training", length, which) for which in ("bert", "auto") for length in settings.training_lengths]
    targeted = 2 * len(settings.inference_lengths)  # BERT and BEACON's default path
    plans = inference[:targeted] + training + inference[targeted:]
    if device.type == "cpu":
        return_freed_memory_to_the_system()
    nets = {}
    bert_peak = {}
    for mode, length, which in plans:
        batch = mlm_batch([length], length, seed=7)

        def measure():
            if which not in nets:
                nets.clear()
                release_memory()
                nets[which] = bert_mlm(model, longest, device) if which == "bert" else \
                    beacon_mlm(model, which, device)
            net = nets[which]
            inputs = {key: value.to(device) for key, value in batch.items()}
            name = "BERT (sdpa)" if which == "bert" else f"BEACON ({label(which, net, inputs)})"
            if mode == "inference":
                net.eval()

                def run():
                    with torch.no_grad(), torch.autocast(**amp):
                        net(input_ids=inputs["input_ids"])
            else:
                net.train()
                optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=device.type == "cuda")

                def run():
                    with torch.autocast(**amp):
                        loss = net(**inputs).loss
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            run()  # warm-up: compilation and its autotuning buffers, the optimizer's state
            extra, total = peak_bytes(run, device)
            return name, extra, total

        outcome = attempt(measure, deadline)
        shown = "BERT (sdpa)" if which == "bert" else f"BEACON ({which})"
        if not outcome.ok:
            table.row(mode, length, shown, outcome.note, "-", "-")
            nets.clear()
            continue
        name, extra, total = outcome.value
        if which == "bert":
            bert_peak[(mode, length)] = extra
        baseline = bert_peak.get((mode, length))
        ratio = "-" if which == "bert" or not baseline or baseline <= 0 else f"{extra / baseline:.2f}x"
        table.row(mode, f"{length:,}", name, f"{extra / 2**20:,.0f}", f"{total / 2**30:.2f}", ratio)
    nets.clear()
    release_memory()


# ---------------------------------------------------------------------------------------------------------------
# 4. Examples.

TINY_BEACON = ["--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32"]
QUIET = ["--disable_tqdm", "true", "--report_to", "none", "--logging_steps", "10"]
NO_EVAL = ["--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"]


def example_arguments(steps: int, ncrna: Path) -> dict[str, list[str]]:
    """Tiny-data arguments per example (after tests/test_resume.py), for `steps` optimizer steps."""
    lambda_fa = str(REPO / "data/lambda_phage/lambda_virus.fa.gz")
    return {
        "run_gue": ["--task_dir", str(REPO / "data/gue/prom/prom_core_tata"), "--max_train_samples", "480",
                    "--max_steps", str(steps), "--per_device_train_batch_size", "16", "--max_length", "34",
                    "--warmup_steps", "0", *TINY_BEACON, *QUIET, *NO_EVAL],
        "run_beacon": ["--task", "ncRNA", "--dataset_dir", str(ncrna), "--max_train_samples", "480",
                       "--max_eval_samples", "16", "--max_test_samples", "16", "--max_steps", str(steps),
                       "--per_device_train_batch_size", "16", "--max_length", "66", "--warmup_steps", "0",
                       *TINY_BEACON, *QUIET, *NO_EVAL],
        "run_randommask": ["--train_file", lambda_fa, "--max_length", "64", "--min_length", "32",
                           "--max_eval_samples", "16", "--k", "3", "--max_steps", str(steps),
                           "--per_device_train_batch_size", "8", *TINY_BEACON, *QUIET],
        "run_self_distillation": ["--train_files", lambda_fa, "--window_length", "64", "--max_train_samples", "480",
                                  "--max_steps", str(steps), "--per_device_train_batch_size", "16",
                                  "--eval_strategy", "no", "--projection_dim", "16", *TINY_BEACON, *QUIET],
        "run_layermatch": ["--num_labeled", "8", "--max_unlabeled", "64", "--max_test_samples", "16", "--mu", "2",
                           "--max_length", "34", "--hidden_size", "8", "--max_steps", str(steps),
                           "--warmup_steps", "0", "--threshold", "0.5", *QUIET],
        "run_imwa": ["--model", "beacon", "--head_class_size", "64", "--imbalance_ratios", "8",
                     "--num_train_epochs", "1", "--max_length", "32", "--hidden_size", "16", "--num_models", "2",
                     "--num_episodes", "2", "--batch_size", "16"],
        "run_demo": ["--quick"],
    }


def run_process(command: list[str], env: dict, deadline: float) -> subprocess.CompletedProcess:
    """Run `command` in its own process group, killed (with any children it started) at `deadline` or when this
    process is interrupted."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=max(deadline - time.monotonic() - 2, 1))
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def section_examples(report: Report, settings: Settings, deadline: float, names: list[str] | None,
                     steps: int) -> None:
    report.text(
        f"## 4. Examples, {steps} steps with --bf16\n\n"
        "Each example in a subprocess on tiny data (the argument lists of tests/test_resume.py) with --bf16 where it "
        "has the option; steps/s as Trainer reports it (the last training run of the example), wall time with "
        "start-up and data preparation."
    )
    table = report.table(["example", "result", "steps/s", "wall s", "note"])
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true",
           "MPLBACKEND": "Agg"}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_examples_") as scratch:
        scratch = Path(scratch)
        ncrna = scratch / "beacon_hub"
        arguments = example_arguments(steps, ncrna)
        for name in names or list(arguments):
            if name not in arguments:
                table.row(name, "unknown example", "-", "-", f"choose from {', '.join(arguments)}")
                continue
            script = REPO / "examples" / f"{name}.py"
            source = script.read_text()
            bf16 = "bf16" in source or "TrainingArguments" in source
            command = [sys.executable, str(script), *arguments[name], "--output_dir", str(scratch / name)]
            command += ["--bf16", "true"] if bf16 else []
            command += ["--use_cpu", "true"] if bf16 and settings.device.type == "cpu" else []
            run_env = {**env, "HF_HOME": str(scratch / "hf_home")} if name == "run_demo" else env

            def run():
                if name == "run_beacon" and not ncrna.exists():
                    built = run_process([sys.executable, str(REPO / "dataset_scripts" / "build_beacon_real.py"),
                                         "--output_dir", str(ncrna), "--configs", "ncRNA"], env, deadline)
                    if built.returncode != 0:
                        return built, 0.0
                start = time.monotonic()
                return run_process(command, run_env, deadline), time.monotonic() - start

            outcome = attempt(run, deadline, minimum=15)
            if not outcome.ok:
                table.row(name, "not run" if outcome.note.startswith("skipped") else "failed", "-", "-",
                          outcome.note)
                continue
            done, seconds = outcome.value
            if name == "run_beacon" and seconds == 0.0:
                table.row(name, "failed", "-", "-", "building the ncRNA dataset failed: "
                          + (done.stderr.strip().splitlines() or [""])[-1])
                continue
            rates = re.findall(r"'train_steps_per_second': '?([0-9.]+)", done.stdout + done.stderr)
            note = "" if bf16 else "no --bf16 option: ran in fp32"
            if done.returncode != 0:
                tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
                print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
                note = f"exit {done.returncode}: {tail[0]}"
            table.row(name, "ok" if done.returncode == 0 else "failed", rates[-1] if rates else "-",
                      f"{seconds:.0f}", note)


# ---------------------------------------------------------------------------------------------------------------


def machine(device: torch.device) -> str:
    import transformers

    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        where = f"{properties.name} ({properties.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        where = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
                f"{torch.get_num_threads()} threads)"
    return (f"{where}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"Python {platform.python_version()}, {datetime.date.today()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU smoke run at tiny sizes (< 1 minute)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"markdown report (default: {DEFAULT_OUTPUT.relative_to(REPO)}; --quick: required)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run (default 480)")
    parser.add_argument("--sections", default=None,
                        help=f"comma-separated, of {','.join(SECTIONS)} (default: all; --quick: all but examples)")
    parser.add_argument("--examples", default=None, help="comma-separated example names (default: all)")
    parser.add_argument("--example_steps", type=int, default=30, help="training steps per example (default 30)")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help=f"accelerator peak for MFU (default on GPU: {H200_BF16_DENSE_TFLOPS:g}, bf16 dense)")
    args = parser.parse_args(argv)

    if args.quick:
        device = torch.device("cpu")
        if args.output is None:
            parser.error("--quick needs --output: it must not overwrite the GPU results")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        parser.error("no CUDA device: run on a GPU, or pass --quick (with --output) for the CPU smoke run")
    output = args.output or DEFAULT_OUTPUT
    sections = args.sections.split(",") if args.sections else [s for s in SECTIONS
                                                               if not (args.quick and s == "examples")]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    settings = settings_for(args.quick, device, args.peak_tflops)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 correctness means fp32 matmuls
        torch.backends.cudnn.allow_tf32 = False
    threads = torch.get_num_threads()
    # Terminated from outside: unwind (the examples' process groups are killed on the way), keeping the report.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.quick:
            torch.set_num_threads(1)  # tiny sizes; two threads on a shared 2-core machine mostly wait for each other
        return run_sections(args, settings, sections, output, argv)
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, previous)


def run_sections(args, settings: Settings, sections: list[str], output: Path, argv: list[str] | None) -> int:
    """Every asked-for section in order, each within its share of the budget; 1 if a correctness check failed."""
    start, device = time.monotonic(), settings.device
    report = Report(output)
    command = " ".join(["python benchmarks/bench_gpu.py", *(argv if argv is not None else sys.argv[1:])])
    report.text(f"# BEACON-B at GPU scale (`{command}`)\n\n{machine(device)}. Time budget {args.budget:.0f} s.")
    deadline = start + args.budget
    correct = True
    for section in SECTIONS:
        if section not in sections:
            continue
        now = time.monotonic()
        section_deadline = min(deadline, now + SECTION_SHARE[section] * args.budget) if not args.quick else deadline
        if deadline - now < 5:
            report.text(f"## {section}\n\nSkipped: the time budget ({args.budget:.0f} s) is spent.")
            if section == "correctness":
                correct = False
            continue
        began = time.monotonic()
        try:
            if section == "correctness":
                correct = section_correctness(report, settings, section_deadline)
            elif section == "throughput":
                section_throughput(report, settings, section_deadline)
            elif section == "memory":
                section_memory(report, settings, section_deadline)
            else:
                names = args.examples.split(",") if args.examples else None
                section_examples(report, settings, section_deadline, names, args.example_steps)
        except Exception as error:  # noqa: BLE001 - a broken section must not stop the others
            traceback.print_exc()
            report.text(f"Section {section} stopped: {type(error).__name__}: {cell_text(str(error))}")
            correct = correct and section != "correctness"
        report.text(f"({section}: {time.monotonic() - began:.0f} s)")
    report.text(f"Total {time.monotonic() - start:.0f} s. Report: {output}")
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
