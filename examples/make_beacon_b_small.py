"""Make the pretrained checkpoint `pretrained/beacon-b-small` that `make demo` fine-tunes.

    python examples/make_beacon_b_small.py                      # about 1.2 hours on 2 idle CPU cores (resumable)
    python examples/make_beacon_b_small.py --max_steps 20 --output_dir /tmp/small   # a smoke run

Steps (each one is skipped when its output is complete, so an interrupted run continues):
  1. the BEACON Hub datasets at full length (build_beacon_real.py) and the Rfam 14.2 seed corpus deduplicated
     against every split of them, with 5% of the families held out whole (build_rfam_corpus.py);
  2. masked-LM pretraining of a 4 x 256 BEACON-B (single nucleotides, ALiBi) with BERT's masking (15% of the
     nucleotides, 80/10/10; RandomMask's fixed schedule at k = 1) through examples/run_randommask.py;
  3. the masked-LM loss on every held-out sequence of both held-out splits, next to its no-context floor;
  4. the Hub-ready folder (safetensors, tokenizer, code for trust_remote_code, training log, card), then the demo's
     fine-tuning (examples/run_demo.py) of this folder on ncRNA and SSP, next to the same architecture trained from
     scratch; its results go into the card.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import datasets
import torch
from run_demo import REPO, SHIPPED_CHECKPOINT, continue_or_restart, run
from run_randommask import heldout_loss
from transformers import AutoModelForMaskedLM, AutoTokenizer, HfArgumentParser

from hf_genomics import DataCollatorForRandomMask
from hf_genomics.data.beacon import get_task
from hf_genomics.data.pretraining_corpus import split_long_sequences
from hf_genomics.model_card import write_model_card

# What the Hub folder keeps of the training folder (no checkpoints, no pickled training arguments).
SHIPPED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt", "configuration_beacon.py",
                 "modeling_beacon.py", "tokenization_nucleotide.py", "tokenization_utils_nucleotide.py",
                 "trainer_state.json", "randommask_results.json")


@dataclass
class Recipe:
    output_dir: str = field(default=str(SHIPPED_CHECKPOINT), metadata={"help": "The Hub-ready folder to write."})
    work_dir: str = field(default="outputs/beacon-b-small", metadata={"help": "Datasets, training and demo runs."})
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    max_length: int = field(default=128, metadata={"help": "Pretraining window in nucleotides."})
    max_steps: int = 6000
    batch_size: int = 32
    learning_rate: float = 1e-3
    mlm_probability: float = 0.15
    seed: int = 0


def pretrain_flags(recipe: Recipe, corpus: Path, folder: Path) -> list[str]:
    return ["examples/run_randommask.py", "--tokenizer", "nucleotide", "--dataset_dir", str(corpus),
            "--output_dir", str(folder), "--max_length", str(recipe.max_length),
            "--hidden_size", str(recipe.hidden_size), "--num_hidden_layers", str(recipe.num_hidden_layers),
            "--num_attention_heads", str(recipe.num_attention_heads),
            "--intermediate_size", str(recipe.intermediate_size), "--max_steps", str(recipe.max_steps),
            "--per_device_train_batch_size", str(recipe.batch_size),
            "--train_sampling_strategy", "group_by_length", "--schedule", "fixed",
            "--mlm_probability", str(recipe.mlm_probability), "--learning_rate", str(recipe.learning_rate),
            "--logging_steps", "50", "--save_strategy", "steps", "--save_steps", "200", "--save_total_limit", "2",
            "--max_eval_samples", "1024", "--seed", str(recipe.seed), "--disable_tqdm", "true"]


@torch.no_grad()
def score_heldout(folder: Path, corpus: Path, recipe: Recipe) -> dict:
    """Masked-LM loss on every window of the held-out splits (fixed masks), each next to its no-context floor."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    collator = DataCollatorForRandomMask(tokenizer, mlm_probability=recipe.mlm_probability, schedule="fixed")
    scores = {}
    for split, name in (("validation", "heldout"), ("test", "test")):
        windows = datasets.load_dataset(str(corpus), split=split).map(
            split_long_sequences, batched=True, fn_kwargs={"max_length": recipe.max_length, "min_length": 16})
        encoded = windows.map(lambda batch: tokenizer(batch["sequence"]), batched=True,
                              remove_columns=windows.column_names)
        loss = heldout_loss(model, encoded, tokenizer, SimpleNamespace(mlm_probability=recipe.mlm_probability),
                            batch_size=64, seed=1234)
        floor = collator.no_context_floor(encoded["input_ids"])
        scores[name] = {"sequences": windows.num_rows, "nucleotides": sum(map(len, windows["sequence"])),
                        "loss": loss, "no_context_floor": floor, "loss_minus_floor": loss - floor}
    return scores


def main(argv: list[str] | None = None) -> None:
    (recipe,) = HfArgumentParser(Recipe).parse_args_into_dataclasses(args=argv)
    work, out = Path(recipe.work_dir).resolve(), Path(recipe.output_dir).resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    beacon, corpus, training = work / "beacon_full", work / "rfam_corpus", work / "pretrain"

    if not (corpus / "build_report.json").is_file():
        run(["dataset_scripts/build_beacon_real.py", "--output_dir", str(beacon), "--max_ssp_length", "100000"],
            work / "logs" / "beacon.log")
        run(["dataset_scripts/build_rfam_corpus.py", "--output_dir", str(corpus), "--exclude_dataset_dir",
             str(beacon)], work / "logs" / "rfam_corpus.log")
    info = json.loads((training / "run_info.json").read_text()) if (training / "run_info.json").is_file() else {}
    if info.get("status") != "finished":
        start = time.time()
        run([*pretrain_flags(recipe, corpus, training), *continue_or_restart(training)], work / "logs" / "pretrain.log")
        (work / "pretrain_wall_seconds.json").write_text(json.dumps({"seconds": round(time.time() - start)}))

    scores = score_heldout(training, corpus, recipe)
    print(json.dumps(scores, indent=2))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in SHIPPED_FILES:
        shutil.copy2(training / name, out / name)
    (out / "heldout_scores.json").write_text(json.dumps({"recipe": asdict(recipe), **scores}, indent=2))

    demo = work / "demo"
    run(["examples/run_demo.py", "--output_dir", str(demo), "--checkpoint", str(out), "--hub_cache_dir",
         str(work / "hub_cache")],
        work / "logs" / "demo.log")
    write_card(out, recipe, scores, json.loads((corpus / "build_report.json").read_text()), demo, work)
    print(f"wrote {out} ({sum(path.stat().st_size for path in out.iterdir()) / 2**20:.1f} MiB)")


def write_card(out: Path, recipe: Recipe, scores: dict, corpus: dict, demo: Path, work: Path) -> None:
    state = json.loads((out / "trainer_state.json").read_text())
    wall = json.loads((work / "pretrain_wall_seconds.json").read_text())["seconds"] \
        if (work / "pretrain_wall_seconds.json").is_file() else None
    parameters = sum(tensor.numel() for tensor in AutoModelForMaskedLM.from_pretrained(out).parameters())
    finetuned = {}
    for folder, model in (("ncRNA", "pretrained"), ("ncRNA_scratch", "from scratch"), ("SSP", "pretrained")):
        result = json.loads((demo / folder / "beacon_results.json").read_text())
        spec = get_task(folder.split("_")[0])
        finetuned[f"{spec.name} test {spec.metric} ({model})"] = round(result["test"][spec.metric_key], 2)
    rows = "\n".join(f"| {split} | {score['sequences']:,} | {score['loss']:.4f} | {score['no_context_floor']:.4f} | "
                     f"{score['loss_minus_floor']:+.4f} |" for split, score in (
                         ("held-out sequences of the training families", scores["heldout"]),
                         (f"{corpus['heldout_families']} held-out Rfam families", scores["test"])))
    summary = f"""A small BEACON-B: {recipe.num_hidden_layers} layers, hidden {recipe.hidden_size}, \
{recipe.num_attention_heads} heads, FFN {recipe.intermediate_size}, single-nucleotide tokens (RNA read as DNA, \
U -> T), ALiBi attention biases, {parameters / 1e6:.1f}M parameters. Made by hf_genomics' \
`examples/make_beacon_b_small.py`.

## Data

The Rfam 14.2 seed sequences (72,262 sequences of 3,026 families, CC0), upper-cased, after dropping \
{corpus['dropped_in_evaluation_data']:,} sequences that occur verbatim in any split of the BEACON evaluation data \
shipped with hf_genomics (nRC ncRNA, bpRNA SSP, ArchiveII, CRI-On, SPL, MRL) and {corpus['dropped_repeats']:,} \
repeats. {corpus['heldout_families']} families ({corpus['rows']['test']:,} sequences) were held out whole and 2% of \
the other families' sequences ({corpus['rows']['validation']:,}) held out as validation; training used \
{corpus['rows']['train']:,} sequences ({corpus['nucleotides']['train'] / 1e6:.2f} Mnt) cut into windows of at most \
{recipe.max_length} nt.

## Compute

Pretrained on 2 CPU cores (no GPU was available){f', {wall / 3600:.1f} hours' if wall else ''}: \
{state['global_step']:,} steps of {recipe.batch_size} windows ({state['global_step'] * recipe.batch_size:,} windows \
drawn in all), AdamW, learning rate {recipe.learning_rate} with 5% warm-up and linear decay, BERT's masking of \
{recipe.mlm_probability:.0%} of the nucleotides (80/10/10).

## Masked-LM loss next to its no-context floor

The floor is the lowest loss a predictor that sees no context reaches under the same masking \
(`hf_genomics.no_context_mlm_loss`, from each split's nucleotide frequencies): a loss below it is context learnt.

| held-out split | sequences | loss | no-context floor | loss - floor |
|---|---|---|---|---|
{rows}

## Fine-tuning (the `make demo` budget, CPU)

The demo's fine-tuning of this checkpoint next to the same architecture trained from scratch with the same budget. \
These are small-budget CPU numbers, far from BEACON's published BEACON-B results."""
    write_model_card(out, model_name="hf-genomics/beacon-b-small", datasets=("Rfam 14.2 seed (deduplicated)",),
                     tags=("rna", "beacon", "alibi", "masked-language-modeling"), training_summary=summary,
                     metrics=finetuned)


if __name__ == "__main__":
    os.chdir(REPO)
    main()
