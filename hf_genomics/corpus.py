"""The small real DNA and RNA corpus shipped in the repository's `data/` folder (sources in `data/PROVENANCE.md`)."""

from pathlib import Path

REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
CORPUS_FILES = {
    # First 3 Mb of human chr1 (soft-masked, with N runs) and the lambda phage genome.
    "dna": ("human_chr1_3mb/chr1.fa.gz", "lambda_phage/lambda_virus.fa.gz"),
    # 1,400 RNAcentral sequences of 28 RNA types.
    "rna": ("rnacentral_sample/format_rnacentral_active.100.sample-Max50.fasta",),
}


def default_corpus_files(kind: str = "dna", data_dir: str | Path | None = None) -> list[Path]:
    """Paths of the embedded FASTA corpus of `kind` ("dna" or "rna"), for `read_fasta`.

    `data_dir` defaults to the repository's `data/` folder, which a wheel install does not include.

    Example:

    ```python
    >>> from hf_genomics import default_corpus_files
    >>> [path.name for path in default_corpus_files("dna")]
    ['chr1.fa.gz', 'lambda_virus.fa.gz']

    ```
    """
    if kind not in CORPUS_FILES:
        raise ValueError(f"kind must be one of {sorted(CORPUS_FILES)}, got {kind!r}.")
    data_dir = REPO_DATA_DIR if data_dir is None else Path(data_dir)
    paths = [data_dir / name for name in CORPUS_FILES[kind]]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"The embedded {kind} corpus is missing ({', '.join(missing)}). It ships in the data/ folder of the "
            "hf_genomics repository, not in the installed package: install from a clone of the repository "
            "(pip install -e .), pass data_dir=, or read your own FASTA files with read_fasta()."
        )
    return paths
