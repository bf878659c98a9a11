"""examples/run_beacon.py's throughput settings: evaluation rows longest first (batches of similar lengths), a
precomputed token-count column, no per-step loss read-back for the NaN filter, loader workers only on a GPU, the
checkpoint's classifier pooling; each flag still wins when given. Training batches stay random."""

import datasets
import pytest
import torch
from transformers import HfArgumentParser

from hf_genomics import BeaconConfig, BeaconForMaskedLM, NucleotideTokenizer, get_task
from scripts.example_scripts import load_script

build_beacon_real = load_script("dataset_scripts/build_beacon_real.py")
run_beacon = load_script("examples/run_beacon.py")


def parse(*flags):
    (args,) = HfArgumentParser(run_beacon.BeaconTrainingArguments).parse_args_into_dataclasses(
        args=["--output_dir", "unused", "--report_to", "none", *flags]
    )
    return args


def test_defaults_avoid_per_step_syncs_and_keep_training_batches_random():
    args = parse("--use_cpu")
    assert args.train_sampling_strategy == "random" and args.logging_nan_inf_filter is False
    assert args.dataloader_num_workers == 0 and not args.dataloader_persistent_workers
    args = parse()
    assert args.dataloader_num_workers == (2 if torch.cuda.is_available() else 0)


def test_flags_override_the_defaults():
    args = parse("--use_cpu", "--logging_nan_inf_filter", "true", "--dataloader_num_workers", "3")
    assert args.logging_nan_inf_filter and args.dataloader_num_workers == 3


def test_token_counts_count_the_longer_input_of_a_pair():
    single = datasets.Dataset.from_dict({"input_ids": [[0, 5, 6, 2], [0, 5, 2], [0, 2]], "labels": [1, 0, 1]})
    assert run_beacon.token_counts(single) == [4, 3, 2]
    assert run_beacon.token_counts(single.select([2, 0])) == [2, 4]
    pair = datasets.Dataset.from_dict({"input_ids": [[0, 5, 2], [0, 5, 6, 7, 2]],
                                       "input_ids_b": [[0, 5, 6, 7, 2, 2], [0, 2]]})
    assert run_beacon.token_counts(pair) == [6, 5]


def test_test_rows_are_evaluated_longest_first(tmp_path, monkeypatch):
    """The 12 real nRC test rows reach the collator in 3 batches of 4, longest first, each padded to its own
    longest row rounded up to --pad_to_multiple_of."""
    build_beacon_real.build(tmp_path / "hub", configs=("ncRNA",))
    batches = []

    class Recording(run_beacon.DataCollatorForBeacon):
        def __call__(self, features):
            batch = super().__call__(features)
            batches.append((batch["attention_mask"].sum(1).tolist(), batch["input_ids"].shape[1]))
            return batch

    monkeypatch.setattr(run_beacon, "DataCollatorForBeacon", Recording)
    run_beacon.main([
        "--task", "ncRNA", "--dataset_dir", str(tmp_path / "hub"), "--output_dir", str(tmp_path / "run"),
        "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "32",
        "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--max_train_samples", "4",
        "--max_test_samples", "12", "--pad_to_multiple_of", "8", "--use_cpu", "--disable_tqdm", "true",
        "--report_to", "none",
    ])  # fmt: skip
    test_batches = batches[-3:]
    lengths = [n for rows, _ in test_batches for n in rows]
    assert len(lengths) == 12 and lengths == sorted(lengths, reverse=True) and lengths[0] > lengths[-1]
    assert [width for _, width in test_batches] == [-(-rows[0] // 8) * 8 for rows, _ in test_batches]


@pytest.mark.parametrize("task,pooling", [("ncRNA", "cls"), ("ncRNA", "mean"), ("SPL", "cls")])
def test_packed_batches_give_the_padded_test_metrics(tmp_path, task, pooling):
    """--pack_sequences with learning rate 0 (the same initial model both times): the test loss and metric on packed
    batches equal those on padded ones, for a sequence-level task (either --classifier_pooling) and a token-level
    task."""
    build_beacon_real.build(tmp_path / "hub", configs=(task,))
    common = [
        "--task", task, "--classifier_pooling", pooling, "--dataset_dir", str(tmp_path / "hub"),
        "--hidden_size", "16", "--num_hidden_layers", "1",
        "--num_attention_heads", "2", "--intermediate_size", "32", "--max_steps", "1", "--learning_rate", "0",
        "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "6", "--max_train_samples", "4",
        "--max_test_samples", "12", "--use_cpu", "--disable_tqdm", "true", "--report_to", "none",
    ]  # fmt: skip
    padded = run_beacon.main([*common, "--output_dir", str(tmp_path / "padded")])
    packed = run_beacon.main([*common, "--output_dir", str(tmp_path / "packed"), "--pack_sequences"])
    assert packed["test_raw"]["test_loss"] == pytest.approx(padded["test_raw"]["test_loss"], rel=1e-5)
    assert packed["test"] == pytest.approx(padded["test"], rel=1e-5)


def test_classifier_pooling_is_the_checkpoints_unless_the_flag_says_otherwise(tmp_path):
    config = BeaconConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                          classifier_pooling="mean")
    BeaconForMaskedLM(config).save_pretrained(tmp_path)

    def pooling(*flags):
        (model_args,) = HfArgumentParser(run_beacon.ModelArguments).parse_args_into_dataclasses(args=list(flags))
        model = run_beacon.build_model(model_args, get_task("ncRNA"), NucleotideTokenizer(), None)
        return model.config.classifier_pooling

    assert pooling("--hidden_size", "16") == "cls"
    assert pooling("--hidden_size", "16", "--classifier_pooling", "mean") == "mean"
    assert pooling("--model_name_or_path", str(tmp_path)) == "mean"
    assert pooling("--model_name_or_path", str(tmp_path), "--classifier_pooling", "cls") == "cls"
