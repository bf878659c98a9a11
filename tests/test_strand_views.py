"""Strand-aware views: which tasks are strand-specific, the reverse-complement probability they default to, the
examples' override, and views with reverse complement off that never reverse-complement a real sequence."""

import csv

import pytest
import torch

from hf_genomics import (
    BEACON_TASKS,
    GUE_TASKS,
    KmerTokenizer,
    NucleotideTokenizer,
    find_gue_task,
    read_fasta,
    reverse_complement_probability,
)
from hf_genomics.data.augment import nucleotide_letters
from hf_genomics.training import trainer_layermatch, trainer_self_distillation
from scripts.example_scripts import load_script

run_layermatch = load_script("examples/run_layermatch.py")
run_self_distillation = load_script("examples/run_self_distillation.py")


def test_every_beacon_task_is_strand_specific_with_a_reason():
    assert len(BEACON_TASKS) == 13
    for task in BEACON_TASKS.values():
        assert task.strand_specific and task.strand_reason.strip()
        assert reverse_complement_probability(task.strand_specific) == 0.0


@pytest.mark.parametrize(
    "folder,strand_specific",
    [("prom/prom_300_tata", True), ("prom/prom_core_all", True), ("splice/reconstructed", True),
     ("virus/covid", True), ("tf/0", False), ("mouse/4", False), ("EMP/H3K4me3", False)],
)  # fmt: skip
def test_gue_task_strandedness_and_default(folder, strand_specific):
    task = find_gue_task(f"data/gue/{folder}/")
    assert task is GUE_TASKS[folder] and task.strand_specific is strand_specific and task.strand_reason
    assert reverse_complement_probability(task.strand_specific) == (0.0 if strand_specific else 0.5)


def test_gue_registry_has_the_28_tasks():
    groups = [task.group for task in GUE_TASKS.values()]
    assert len(GUE_TASKS) == 28
    assert {group: groups.count(group) for group in set(groups)} == {
        "EMP": 10, "mouse": 5, "prom": 6, "splice": 1, "tf": 5, "virus": 1,
    }  # fmt: skip
    assert find_gue_task("data/my_task") is None


def test_override_wins_and_is_checked():
    assert reverse_complement_probability(True, 0.3) == 0.3
    assert reverse_complement_probability(False, 0.0) == 0.0
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        reverse_complement_probability(True, 1.5)


def layermatch_args(*flags):
    (args,) = run_layermatch.HfArgumentParser(run_layermatch.LayerMatchExampleArguments).parse_args_into_dataclasses(
        args=list(flags)
    )
    return args


def test_run_layermatch_picks_the_task_default_or_the_flag():
    probability, reason = run_layermatch.strong_view_reverse_complement(layermatch_args())  # prom_300_tata
    assert probability == 0.0 and reason.startswith("GUE prom/prom_300_tata is strand-specific: a promoter")
    probability, reason = run_layermatch.strong_view_reverse_complement(layermatch_args("--task_dir", "data/gue/tf/2"))
    assert probability == 0.5 and reason.startswith("GUE tf/2 is not strand-specific")
    probability, reason = run_layermatch.strong_view_reverse_complement(layermatch_args("--task_dir", "data/mine"))
    assert probability == 0.0 and "no GUE task" in reason
    flags = ("--task_dir", "data/gue/prom/prom_300_tata", "--reverse_complement_prob", "0.5")
    assert run_layermatch.strong_view_reverse_complement(layermatch_args(*flags)) == (0.5, "--reverse_complement_prob")


def test_run_self_distillation_keeps_reverse_complement_on_dna_only():
    parser = run_self_distillation.HfArgumentParser(
        (run_self_distillation.DataArguments, run_self_distillation.DistillationArguments)
    )

    def resolve(*flags, tokenizer=None):
        data_args, sd_args = parser.parse_args_into_dataclasses(args=list(flags))
        tokenizer = tokenizer or NucleotideTokenizer()
        return run_self_distillation.student_view_reverse_complement(data_args, sd_args, tokenizer)

    assert resolve() == (0.5, "DNA corpus: double-stranded, both strands occur")
    assert resolve("--corpus", "rna")[0] == 0.0
    assert resolve(tokenizer=KmerTokenizer(k=1, alphabet="rna"))[0] == 0.0
    assert resolve("--corpus", "rna", "--reverse_complement_prob", "0.25") == (0.25, "--reverse_complement_prob")
    with pytest.raises(SystemExit):
        resolve("--corpus", "protein")


def orientations(tokenizer, view_ids, sequences) -> list[str]:
    """For each row, "forward" or "reverse": which of the sequence and its reverse complement the row matches at
    more positions (masked and mutated positions match neither, or one by chance)."""
    letters = nucleotide_letters(tokenizer)
    complement = str.maketrans(letters, letters[::-1])
    framing = set(tokenizer.all_special_tokens) - {tokenizer.mask_token}
    result = []
    for ids, sequence in zip(view_ids, sequences):
        bases = [token for token in tokenizer.convert_ids_to_tokens(ids.tolist()) if token not in framing]
        reverse = sequence.translate(complement)[::-1]
        forward_hits = sum(a == b for a, b in zip(bases, sequence))
        reverse_hits = sum(a == b for a, b in zip(bases, reverse))
        result.append("forward" if forward_hits > reverse_hits else "reverse")
    return result


@pytest.fixture(scope="module")
def promoters(data_dir):
    with open(data_dir / "gue/prom/prom_core_tata/test.csv") as handle:
        return [row["sequence"] for row in csv.DictReader(handle)][:32]


def test_layermatch_strong_view_never_reverse_complements_by_default(promoters):
    tokenizer = NucleotideTokenizer()
    batch = tokenizer(promoters, padding=True, return_tensors="pt")
    _, strong = trainer_layermatch.default_views(tokenizer)
    for draw in range(8):
        strong.manual_seed(draw)
        assert set(orientations(tokenizer, strong(batch)["input_ids"], promoters)) == {"forward"}
    # The check sees a reverse complement when there is one.
    _, strong = trainer_layermatch.default_views(tokenizer, reverse_complement_prob=1.0)
    assert set(orientations(tokenizer, strong(batch)["input_ids"], promoters)) == {"reverse"}


def test_self_distillation_student_view_is_never_reverse_complemented_on_rna(data_dir):
    sequences = [seq[:60] for _, seq in read_fasta(data_dir / "rnacentral_sample" /
                                                   "format_rnacentral_active.100.sample-Max50.fasta")]
    sequences = [seq for seq in sequences if len(seq) == 60 and set(seq) <= set("ACGU")][:32]
    assert len(sequences) == 32
    tokenizer = KmerTokenizer(k=1, alphabet="rna")
    batch = tokenizer(sequences, return_tensors="pt")
    student, _ = trainer_self_distillation.default_views(tokenizer)
    torch.manual_seed(0)
    for _ in range(8):
        assert set(orientations(tokenizer, student(batch)["input_ids"], sequences)) == {"forward"}
    dna_student, _ = trainer_self_distillation.default_views(NucleotideTokenizer())
    assert [aug.p for aug in dna_student.augmentations if hasattr(aug, "p")] == [0.5]
