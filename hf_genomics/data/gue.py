"""Registry of the 28 GUE tasks (Zhou et al., 2024, "DNABERT-2: Efficient Foundation Model and Benchmark for
Multi-Species Genome", ICLR, arXiv:2306.15006), named by their folder `<group>/<name>` in the GUE release.

Plain data only: which tasks have strand-specific labels, so that augmentations keep reverse complement off for them.
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GueTask:
    """One GUE task: its folder `group/name` and whether its label holds only for the sequence as given, not for its
    reverse complement (`strand_specific`), with the reason in `strand_reason`."""

    group: str
    name: str
    strand_specific: bool
    strand_reason: str

    @property
    def folder(self) -> str:
        return f"{self.group}/{self.name}"


_PROMOTER = "a promoter is oriented by its gene's start site; read from the other strand it points away from the gene."
_HUMAN_TF = "ChIP-seq peaks of a human TF: proteins bind double-stranded DNA, the site is on both strands."
_MOUSE_TF = "ChIP-seq peaks of a mouse TF: proteins bind double-stranded DNA, the site is on both strands."
_EMP = "yeast histone marks cover a stretch of double-stranded DNA: both strands carry the mark."

GUE_TASKS: dict[str, GueTask] = {
    task.folder: task
    for task in (
        *(GueTask("EMP", mark, False, _EMP) for mark in (
            "H3", "H3K14ac", "H3K36me3", "H3K4me1", "H3K4me2", "H3K4me3", "H3K79me3", "H3K9ac", "H4", "H4ac",
        )),
        *(GueTask("mouse", str(index), False, _MOUSE_TF) for index in range(5)),
        *(GueTask("prom", name, True, _PROMOTER) for name in (
            "prom_300_all", "prom_300_notata", "prom_300_tata", "prom_core_all", "prom_core_notata", "prom_core_tata",
        )),
        GueTask("splice", "reconstructed", True, "donor (GT) and acceptor (AG) sites are read along the transcript."),
        *(GueTask("tf", str(index), False, _HUMAN_TF) for index in range(5)),
        GueTask("virus", "covid", True, "SARS-CoV-2 is single-stranded (+) RNA, given in its sense orientation."),
    )
}  # fmt: skip


def find_gue_task(task_dir: str | Path) -> GueTask | None:
    """The GUE task whose data sit in `task_dir` (matched on its last two folders, e.g. `data/gue/prom/prom_300_tata`),
    or None for a folder that is no GUE task."""
    parts = Path(task_dir).parts[-2:]
    return GUE_TASKS.get("/".join(parts))
