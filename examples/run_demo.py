"""The main job: fine-tune the pretrained BEACON-B-small shipped in `pretrained/` on BEACON tasks, next to the same
model trained from scratch, and write a report. With `--pretrain`, the demo pretrains its own small model first.

    python examples/run_demo.py              # what `make demo` runs (about 15 minutes on 2 CPU cores)
    python examples/run_demo.py --pretrain   # pretrain a small BEACON-B on Rfam inside the demo first
    python examples/run_demo.py --quick      # a one-minute smoke run of every stage (used by the tests)
    python examples/run_demo.py --fresh      # forget finished stages and start over

Stages (each one prints what it does and where it writes; a finished stage is skipped on re-run, an interrupted
one continues from its newest checkpoint):
  1. datasets       build the Hub dataset folders (Parquet + card) from the raw real data in data/: the BEACON
                    tasks, and (with --pretrain) the Rfam 14.2 seed corpus deduplicated against them
  2. pretrain       (--pretrain only) RandomMask MLM of a small BEACON-B (single nucleotide + ALiBi) on Rfam; its
                    held-out losses are printed next to their no-context floors
  3. ncRNA          fine-tune the pretrained model on nRC ncRNA classification (13 classes)
  4. ncRNA_scratch  the same architecture, randomly initialised, with the same fine-tuning budget
  5. SSP            fine-tune the pretrained model on bpRNA secondary structure (pairwise head)
  6. publish        the pretrained model as a Hub-ready folder, also published to the local HF cache as --hub_id
  7. report         results table next to BEACON's published numbers, report.md with plots
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from run_beacon import read_test_predictions
from transformers import HfArgumentParser

from hf_genomics import publish_to_local_cache
from hf_genomics.data.beacon import get_task
from hf_genomics.model_card import write_model_card
from hf_genomics.plots import plot_confusion_matrix, plot_loss_curves, plot_pair_map, plot_randommask_schedule
from hf_genomics.training.checkpoints import latest_valid_checkpoint

REPO = Path(__file__).resolve().parents[1]
# Pretrained on the deduplicated Rfam 14.2 seed corpus (its card says how); `--pretrain` replaces it.
SHIPPED_CHECKPOINT = REPO / "pretrained" / "beacon-b-small"


@dataclass
class DemoArguments:
    output_dir: str | None = field(
        default=None, metadata={"help": "Where every stage writes (default outputs/demo, outputs/demo-pretrain with "
                                "--pretrain)."}
    )
    quick: bool = field(default=False, metadata={"help": "Tiny sizes and a few steps per stage (smoke test)."})
    fresh: bool = field(default=False, metadata={"help": "Delete output_dir first and run every stage again."})
    pretrain: bool = field(
        default=False,
        metadata={"help": "Pretrain a small model on Rfam in the demo instead of fine-tuning --checkpoint."},
    )
    checkpoint: str = field(
        default=str(SHIPPED_CHECKPOINT.relative_to(REPO)),
        metadata={"help": "The pretrained model folder to fine-tune."},
    )
    hub_id: str | None = field(
        default=None, metadata={"help": "Repo id in the local HF cache (default: hf-genomics/beacon-b-small, or "
                                "hf-genomics/beacon-b-demo with --pretrain)."}
    )
    hub_cache_dir: str | None = field(
        default=None, metadata={"help": "HF hub cache to publish into (default: the user's cache, HF_HUB_CACHE)."}
    )
    seed: int = field(default=42)


def sizes(quick: bool) -> dict:
    """Budgets of the full demo (about 15 minutes on 2 cores) or the smoke run; the `pretrain_*` model is the one
    `--pretrain` builds (without it the shipped checkpoint's architecture is used)."""
    if quick:
        return dict(hidden=32, layers=2, heads=2, ffn=64, pretrain_steps=8, pretrain_batch=8, pretrain_len=64,
                    pretrain_lr=2e-3, ncrna_epochs=1, ncrna_train=64, ncrna_eval=32, ssp_epochs=1, ssp_train=16,
                    ssp_eval=8, ssp_len=64, finetune_len=128, batch=8)
    return dict(hidden=128, layers=4, heads=4, ffn=512, pretrain_steps=600, pretrain_batch=32, pretrain_len=128,
                pretrain_lr=2e-3, ncrna_epochs=1, ncrna_train=None, ncrna_eval=None, ssp_epochs=2, ssp_train=1000,
                ssp_eval=300, ssp_len=160, finetune_len=192, batch=32)


def run(command: list[str], log: Path) -> None:
    """Run one stage's script, streaming its progress bars, and keep a copy of its output."""
    print(f"    $ {' '.join(command)}", flush=True)
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, *command], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        # Relay raw chunks, not lines: progress bars redraw with "\r" and would otherwise show only at the end.
        while chunk := os.read(process.stdout.fileno(), 1 << 14):
            handle.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        if process.wait() != 0:
            raise SystemExit(f"stage failed (exit {process.returncode}); full output in {log}")


def continue_or_restart(folder: Path) -> list[str]:
    """Flags for a training stage that did not finish: continue from its newest intact checkpoint, or start over
    in its folder (the demo owns it) when it left none."""
    checkpoint = latest_valid_checkpoint(folder)
    if checkpoint is None:
        return ["--overwrite_output_dir"]
    print(f"    continuing from {checkpoint}", flush=True)
    return ["--resume_from_checkpoint", str(checkpoint)]


def pretraining_lines(results: dict) -> list[str]:
    """Each scored split's masked-LM loss next to its no-context floor (run_randommask's results)."""
    names = {"heldout": "held-out sequences of the training families", "test": "held-out Rfam families"}
    return [f"| {names[split]} | {results[f'{split}_loss_after']:.4f} | {results[f'{split}_no_context_floor']:.4f} | "
            f"**{results[f'{split}_loss_minus_floor']:+.4f}** |" for split in names if f"{split}_loss_after" in results]


class Demo:
    def __init__(self, args: DemoArguments):
        self.args = args
        self.out = Path(args.output_dir or ("outputs/demo-pretrain" if args.pretrain else "outputs/demo")).resolve()
        self.size = sizes(args.quick)
        self.datasets = self.out / "datasets" / "beacon"
        self.corpus = self.out / "datasets" / "rfam"
        self.pretrained = self.out / "pretrain" if args.pretrain else (REPO / args.checkpoint).resolve()
        self.hub_id = args.hub_id or ("hf-genomics/beacon-b-demo" if args.pretrain else "hf-genomics/beacon-b-small")
        self.hub_folder = self.out / "hub" / self.hub_id.split("/")[-1]
        if not args.pretrain and not (self.pretrained / "config.json").is_file():
            raise SystemExit(f"The pretrained checkpoint {self.pretrained} is missing; run with --pretrain.")

    def stage(self, name: str, what: str, where: Path, body, always: bool = False) -> None:
        marker = self.out / f".done-{name}"
        if marker.exists() and not always:
            print(f"[{name}] already done ({where}); skipping. Use --fresh to redo it.")
            return
        print(f"\n[{name}] {what}\n    -> {where}", flush=True)
        start = time.time()
        body()
        marker.write_text(json.dumps({"seconds": round(time.time() - start, 1)}))
        print(f"[{name}] done in {time.time() - start:.0f} s", flush=True)

    # ----- stages -----

    def build_datasets(self) -> None:
        # The smoke run builds only the two configs it fine-tunes on; the demo builds every shipped config.
        configs = ["--configs", "ncRNA", "SSP"] if self.args.quick else []
        run(["dataset_scripts/build_beacon_real.py", "--output_dir", str(self.datasets),
             "--max_ssp_length", str(self.size["ssp_len"]), *configs], self.out / "logs" / "datasets.log")
        if self.args.pretrain:
            run(["dataset_scripts/build_rfam_corpus.py", "--output_dir", str(self.corpus), "--exclude_dataset_dir",
                 str(self.datasets)], self.out / "logs" / "rfam_corpus.log")

    def pretrain(self) -> None:
        s = self.size
        run(["examples/run_randommask.py", "--tokenizer", "nucleotide", "--dataset_dir", str(self.corpus),
             "--output_dir", str(self.pretrained), "--max_length", str(s["pretrain_len"]),
             "--hidden_size", str(s["hidden"]), "--num_hidden_layers", str(s["layers"]),
             "--num_attention_heads", str(s["heads"]), "--intermediate_size", str(s["ffn"]),
             "--max_steps", str(s["pretrain_steps"]), "--per_device_train_batch_size", str(s["pretrain_batch"]),
             "--learning_rate", str(s["pretrain_lr"]), "--train_sampling_strategy", "group_by_length",
             "--mlm_probability", "0.05",
             "--max_eval_samples", "512", "--logging_steps", str(max(1, s["pretrain_steps"] // 30)),
             "--save_strategy", "steps", "--save_steps", str(max(1, s["pretrain_steps"] // 4)),
             "--save_total_limit", "1", "--seed", str(self.args.seed), *continue_or_restart(self.pretrained)],
            self.out / "logs" / "pretrain.log")
        print("\n".join(["    masked-LM loss after pretraining, next to its no-context floor:",
                         *pretraining_lines(self.pretraining_results())]))

    def pretraining_results(self) -> dict:
        """Held-out losses and floors: over every held-out window where `make_beacon_b_small.py` scored them
        (`heldout_scores.json`), else run_randommask's own evaluation (a sample of windows)."""
        scores = self.pretrained / "heldout_scores.json"
        if not scores.is_file():
            return json.loads((self.pretrained / "randommask_results.json").read_text())
        saved = json.loads(scores.read_text())
        names = {"loss_after": "loss", "no_context_floor": "no_context_floor", "loss_minus_floor": "loss_minus_floor"}
        return {f"{split}_{key}": saved[split][name] for split in ("heldout", "test") if split in saved
                for key, name in names.items()}

    def architecture_flags(self) -> list[str]:
        """Size flags of a fresh model with the pretrained model's architecture (the from-scratch control)."""
        config = json.loads((self.pretrained / "config.json").read_text())
        return ["--hidden_size", str(config["hidden_size"]), "--num_hidden_layers", str(config["num_hidden_layers"]),
                "--num_attention_heads", str(config["num_attention_heads"]),
                "--intermediate_size", str(config["intermediate_size"])]

    def finetune(self, task: str, scratch: bool = False) -> None:
        s = self.size
        prefix = task.lower()
        folder = self.out / (f"{task}_scratch" if scratch else task)
        limits = [f"--max_train_samples={s[prefix + '_train']}"] if s[prefix + "_train"] else []
        limits += [f"--max_eval_samples={s[prefix + '_eval']}", f"--max_test_samples={s[prefix + '_eval']}"] \
            if s[prefix + "_eval"] else []
        model = self.architecture_flags() if scratch else ["--model_name_or_path", str(self.pretrained)]
        run(["examples/run_beacon.py", "--task", task, "--dataset_dir", str(self.datasets), *model,
             "--output_dir", str(folder),
             "--num_train_epochs", str(s[prefix + "_epochs"]), "--max_length", str(s["finetune_len"]),
             "--per_device_train_batch_size", str(s["batch"] if task == "ncRNA" else 8),
             "--learning_rate", "1e-3" if task == "ncRNA" else "2e-3", "--logging_steps", "20",
             "--seed", str(self.args.seed), *limits, *continue_or_restart(folder),
             # BEACON-B's pair head (16 blocks x 48 channels) costs seconds per step on CPU: use a small one. Pairs
             # are under 1 % of the cells, and after 2 epochs no cell reaches p > 0.5 unless pairs weigh about as
             # much as the rest (measured F1 at weight 1, 10, 30: 0; at 100: 11.6 %).
             *(["--pairwise_channels", "16", "--pairwise_num_blocks", "2", "--pairwise_pos_weight", "100"]
               if task == "SSP" else [])],
            self.out / "logs" / f"{folder.name}.log")

    def results(self, folder: str) -> dict:
        return json.loads((self.out / folder / "beacon_results.json").read_text())

    def publish(self) -> None:
        if self.hub_folder.exists():
            shutil.rmtree(self.hub_folder)
        shutil.copytree(self.pretrained, self.hub_folder,
                        ignore=shutil.ignore_patterns("checkpoint-*", "*.json.lock", "runs", "run_info.json"))
        if self.args.pretrain:
            results = {task: self.results(task) for task in ("ncRNA", "SSP")}
            pretraining = self.pretraining_results()
            write_model_card(
                self.hub_folder, model_name=self.hub_id, datasets=("Rfam 14.2 seed (deduplicated)", "nRC", "bpRNA"),
                tags=("rna", "beacon", "alibi", "randommask"),
                training_summary=(f"Small BEACON-B (single-nucleotide tokens, ALiBi) pretrained with RandomMask by "
                                  f"hf_genomics' demo on the Rfam 14.2 seed corpus, deduplicated against the BEACON "
                                  f"evaluation data, for {self.size['pretrain_steps']} steps on "
                                  f"{os.cpu_count()} CPU cores. A demonstration model."),
                metrics={**{f"{task} test {r['metric']}": round(r["test"][get_task(task).metric_key], 2)
                            for task, r in results.items()},
                         **{key: round(pretraining[key], 4) for key in pretraining
                            if key.endswith(("_loss_after", "_no_context_floor", "_loss_minus_floor"))}},
            )
        snapshot = publish_to_local_cache(self.hub_folder, self.hub_id, cache_dir=self.args.hub_cache_dir)
        print(f"    push_to_hub-ready folder: {self.hub_folder}\n    local HF cache snapshot: {snapshot}\n"
              f"    try: AutoModel.from_pretrained({self.hub_id!r})  (works with HF_HUB_OFFLINE=1)")

    def report(self) -> None:
        figures = self.out / "figures"
        rows, histories = [], {"pretrain (MLM)": read_log_history(self.pretrained)}
        for name in ("ncRNA", "ncRNA_scratch", "SSP"):
            histories[name] = read_log_history(self.out / name)
        plot_loss_curves(histories, figures / "loss_curves.png")
        plot_randommask_schedule(histories["pretrain (MLM)"], figures / "randommask_schedule.png")
        self.plot_ncrna_confusion(figures / "ncrna_confusion.png")
        self.plot_ssp_example(figures / "ssp_pair_map.png")

        for folder, model in (("ncRNA", "pretrained"), ("ncRNA_scratch", "from scratch, same budget"),
                              ("SSP", "pretrained")):
            task = folder.split("_")[0]
            result, spec = self.results(folder), get_task(task)
            unit = "%" if spec.percent else ""
            rows.append(f"| {task} | {model} | {spec.metric} | **{result['test'][spec.metric_key]:.2f}{unit}** | "
                        f"{spec.published['CNN']} | {spec.published['BEACON-B']} |")
        table = "\n".join(["| task | model | metric | this run (CPU) | CNN (BEACON paper) | BEACON-B (BEACON paper) |",
                           "|---|---|---|---|---|---|", *rows])
        floors = "\n".join(["| masked-LM loss on | loss | no-context floor | loss - floor |", "|---|---|---|---|",
                            *pretraining_lines(self.pretraining_results())])
        mode = "quick smoke run" if self.args.quick else "full demo"
        config = json.loads((self.pretrained / "config.json").read_text())
        s = self.size
        origin = (f"pretrained by this demo with RandomMask for {s['pretrain_steps']} steps" if self.args.pretrain
                  else f"the checkpoint `{self.args.checkpoint}` (its model card says how it was pretrained)")
        report = f"""# hf_genomics demo report ({mode})

A small BEACON-B ({config['num_hidden_layers']} layers, hidden {config['hidden_size']}, single-nucleotide tokens,
ALiBi), {origin}, on the Rfam 14.2 seed corpus deduplicated against the evaluation data, then fine-tuned on two
BEACON tasks built from real data (`dataset_scripts/build_beacon_real.py`). The same architecture trained from
scratch with the same ncRNA budget is the control for what pretraining gives.

Pretraining, each masked-LM loss next to the lowest loss a predictor without context reaches under the same masking
(`hf_genomics.metrics.no_context_mlm_loss`):

{floors}

The published columns are BEACON's Table 3 (an 86M-parameter model pretrained on 523M RNAs on GPUs): **the
comparison shows the scale gap, not a reproduction.** Budget: ncRNA {s['ncrna_epochs']} epoch(s), inputs cut to
{s['finetune_len'] - 2} nt; SSP {s['ssp_epochs']} epochs on {s['ssp_train'] or 'all'} training RNAs of <=
{s['ssp_len']} nt with a small pair head (2 blocks x 16 channels) and base pairs weighted 100x in the loss (BEACON:
unweighted), scored on {s['ssp_eval'] or 'all'} test RNAs (BEACON's SSP uses the full bpRNA TS0 split, so the F1
values are not directly comparable).

{table}

## Figures

![loss curves](figures/loss_curves.png)

![RandomMask schedule](figures/randommask_schedule.png)

![ncRNA confusion matrix](figures/ncrna_confusion.png)

![SSP pair map](figures/ssp_pair_map.png)

## Artefacts (paths relative to this report)

- datasets (Parquet + card, `datasets.load_dataset(path, "ncRNA")`): `{self.datasets.relative_to(self.out)}`
- pretrained model + tokenizer + card: `{self.hub_folder.relative_to(self.out)}`, also in the local HF cache as
  `{self.hub_id}`
- fine-tuned models and `beacon_results.json`: `ncRNA/`, `ncRNA_scratch/`, `SSP/`

Stage times on this machine ({os.cpu_count()} CPUs): {self.stage_times()}.
"""
        (self.out / "report.md").write_text(report)
        print("\n" + floors + "\n\n" + table + f"\n\nReport: {self.out / 'report.md'}")

    def stage_times(self) -> str:
        times = []
        for name in ("datasets", "pretrain", "ncRNA", "ncRNA_scratch", "SSP", "publish"):
            marker = self.out / f".done-{name}"
            if marker.exists():
                times.append(f"{name} {json.loads(marker.read_text())['seconds']:.0f} s")
        return ", ".join(times)

    # ----- figures from the predictions run_beacon saved -----

    def plot_ncrna_confusion(self, path: Path) -> None:
        saved = read_test_predictions(self.out / "ncRNA")
        predicted = np.array([logits.argmax() for logits in saved["predictions"]])
        truth = np.array(saved["labels"])
        names = list(saved["label_names"])
        matrix = np.zeros((len(names), len(names)), dtype=int)
        np.add.at(matrix, (truth, predicted), 1)
        plot_confusion_matrix(matrix, names, path, title=f"nRC test, accuracy {np.mean(truth == predicted):.1%}")

    def plot_ssp_example(self, path: Path) -> None:
        saved = read_test_predictions(self.out / "SSP")
        # The longest of the first scored test RNAs gives the most readable map.
        index = int(np.argmax([len(labels) for labels in saved["labels"][:32]]))
        truth, logits = saved["labels"][index], saved["predictions"][index].astype(np.float64)
        name = saved["id"][index] if "id" in saved else saved["row"][index]
        plot_pair_map((truth == 1).astype(float), 1 / (1 + np.exp(-logits)), path,
                      title=f"bpRNA test RNA {name} ({truth.shape[0]} nt)")


def read_log_history(folder: Path) -> list[dict]:
    """The Trainer's log history, from ``trainer_state.json`` in the folder or its last checkpoint."""
    candidates = [folder / "trainer_state.json", *sorted(folder.glob("checkpoint-*/trainer_state.json"))]
    existing = [path for path in candidates if path.exists()]
    if not existing:
        raise FileNotFoundError(f"no trainer_state.json in {folder}: did its stage finish?")
    return json.loads(existing[0].read_text())["log_history"]


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=argv)
    demo = Demo(args)
    if args.fresh and demo.out.exists():
        shutil.rmtree(demo.out)
    (demo.out / "logs").mkdir(parents=True, exist_ok=True)
    print(f"hf_genomics demo ({'quick' if args.quick else 'full'}): writing to {demo.out}")
    demo.stage("datasets", "Building Hub datasets from data/ (BEACON tasks" + (", Rfam corpus)" if args.pretrain
               else ")"), demo.datasets.parent, demo.build_datasets)
    if args.pretrain:
        demo.stage("pretrain", "Pretraining a small BEACON-B with RandomMask on Rfam", demo.pretrained, demo.pretrain)
    demo.stage("ncRNA", "Fine-tuning the pretrained model on ncRNA (nRC, 13 classes)", demo.out / "ncRNA",
               lambda: demo.finetune("ncRNA"))
    demo.stage("ncRNA_scratch", "The same architecture from scratch on ncRNA, same budget", demo.out / "ncRNA_scratch",
               lambda: demo.finetune("ncRNA", scratch=True))
    demo.stage("SSP", "Fine-tuning on SSP (bpRNA secondary structure)", demo.out / "SSP", lambda: demo.finetune("SSP"))
    demo.stage("publish", f"Publishing the pretrained model as {demo.hub_id}", demo.hub_folder, demo.publish)
    demo.stage("report", "Writing the report and figures", demo.out / "report.md", demo.report, always=True)

if __name__ == "__main__":
    main()
