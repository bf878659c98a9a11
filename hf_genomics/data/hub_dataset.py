"""Write a multi-config Hub dataset folder: one Parquet file per config and split plus a `README.md` card.

The card's YAML `configs:` block maps each config to its files, so `datasets.load_dataset(folder, config)` works
offline with no loading script (datasets >= 4 refuses scripts; a `<dirname>.py` next to the data would break it).
"""

from dataclasses import dataclass, field
from pathlib import Path

import datasets
import yaml

from .beacon import SPLICE_LABELS, get_task


def beacon_features(task_name: str, label_names: tuple[str, ...] | None = None) -> datasets.Features:
    """The column schema of one BEACON task in our Hub layout (shared by every builder and by the collators).

    Every row has `id` and `sequence` (CRI-Off: `sgrna` and `target`); the target is `label`, except for the
    pairwise tasks, which store 0-based `pairs` (SSP), `contacts` (CMP, i <= j) or a dense `distance_map` (DMP).
    """
    task = get_task(task_name)
    string, float32 = datasets.Value("string"), datasets.Value("float32")
    matrix_pairs = datasets.List(datasets.List(datasets.Value("int32")))
    columns = {"id": string, "sequence": string}
    if task.name == "SSP":
        columns |= {"structure": string, "pairs": matrix_pairs}
    elif task.name == "CMP":
        columns |= {"contacts": matrix_pairs}
    elif task.name == "DMP":
        columns |= {"distance_map": datasets.List(datasets.List(float32))}
    elif task.name == "SSI":
        columns |= {"struct": datasets.List(float32), "label": datasets.List(float32)}
    elif task.name == "SPL":
        columns |= {"label": datasets.List(datasets.ClassLabel(names=list(label_names or SPLICE_LABELS)))}
    elif task.name == "VDP":
        columns |= {
            "structure": string,
            "predicted_loop_type": string,
            "signal_to_noise": float32,
            "seq_scored": datasets.Value("int32"),
            "label": datasets.List(datasets.List(float32)),
        }
    elif task.name == "CRI-Off":
        columns = {"id": string, "sgrna": string, "target": string, "label": float32}
    elif task.problem_type == "single_label_classification":
        names = label_names or task.label_names or tuple(str(k) for k in range(task.num_labels))
        columns |= {"label": datasets.ClassLabel(names=list(names))}
    elif task.problem_type == "multi_label_classification":
        columns |= {"label": datasets.List(datasets.Value("int8"))}
    elif task.num_labels > 1:
        columns |= {"label": datasets.List(float32)}
    else:
        columns |= {"label": float32}
    return datasets.Features(columns)


@dataclass
class HubConfig:
    """One config of a Hub dataset: rows per split, their `datasets.Features`, and provenance for the card."""

    name: str
    splits: dict[str, list[dict]]
    features: datasets.Features
    description: str
    source: str
    license: str
    citation: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _to_dataset(config: HubConfig, split: str, rows: list[dict]) -> datasets.Dataset:
    try:
        return datasets.Dataset.from_list(rows, features=config.features)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"config {config.name!r}, split {split!r}: rows do not match the features ({error}).") from error


def write_hub_dataset(
    output_dir: str | Path,
    configs: list[HubConfig],
    title: str,
    summary: str,
    license: str = "other",
    task_categories: tuple[str, ...] = (),
    tags: tuple[str, ...] = ("biology", "rna", "genomics"),
    citation: str = "",
) -> Path:
    """Write `<output_dir>/<config>/<split>.parquet` for every config and a README.md dataset card."""
    output_dir = Path(output_dir)
    if (output_dir / f"{output_dir.name}.py").exists():
        raise ValueError(f"{output_dir / (output_dir.name + '.py')} would make datasets treat the folder as a script.")
    output_dir.mkdir(parents=True, exist_ok=True)
    progress_bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    yaml_configs, yaml_infos = [], []
    for config in configs:
        data_files = []
        split_sizes = []
        for split, rows in config.splits.items():
            path = Path(config.name) / f"{split}.parquet"
            (output_dir / config.name).mkdir(exist_ok=True)
            dataset = _to_dataset(config, split, rows)
            dataset.to_parquet(str(output_dir / path))
            data_files.append({"split": split, "path": path.as_posix()})
            split_sizes.append({"name": split, "num_bytes": dataset.data.nbytes, "num_examples": len(rows)})
        yaml_configs.append({"config_name": config.name, "data_files": data_files})
        yaml_infos.append(
            {"config_name": config.name, "features": config.features._to_yaml_list(), "splits": split_sizes}
        )
    metadata = {
        "license": license,
        "task_categories": list(task_categories),
        "tags": list(tags),
        "pretty_name": title,
        "configs": yaml_configs,
        "dataset_info": yaml_infos,
    }
    body = [f"# {title}", "", summary, "", "## Configs", ""]
    body += ["| config | splits (rows) | source | license |", "|---|---|---|---|"]
    for config in configs:
        sizes = ", ".join(f"{split} {len(rows):,}" for split, rows in config.splits.items())
        body.append(f"| `{config.name}` | {sizes} | {config.source} | {config.license} |")
    for config in configs:
        body += ["", f"### `{config.name}`", "", config.description, "", f"- Source: {config.source}"]
        body += [f"- License: {config.license}"] + [f"- {key}: {value}" for key, value in config.extra.items()]
        if config.citation:
            body += ["", "```bibtex", config.citation.strip(), "```"]
    body += [
        "",
        "## Usage",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("path/to/this/folder", "{configs[0].name}")',
        "```",
    ]
    if citation:
        body += ["", "## Citation", "", "```bibtex", citation.strip(), "```"]
    card = "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(body) + "\n"
    (output_dir / "README.md").write_text(card)
    if progress_bars:
        datasets.enable_progress_bars()
    return output_dir
