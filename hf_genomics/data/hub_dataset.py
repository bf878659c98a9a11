"""Write a multi-config Hub dataset folder: one Parquet file per config and split plus a `README.md` card.

The card's YAML `configs:` block maps each config to its files, so `datasets.load_dataset(folder, config)` works
offline with no loading script (datasets >= 4 refuses scripts; a `<dirname>.py` next to the data would break it).
"""

import hashlib
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import datasets
import yaml

from .beacon import get_task


def beacon_features(task_name: str, label_names: tuple[str, ...] | None = None) -> datasets.Features:
    """The column schema of one task in our Hub layout (`BeaconTask.features`), shared by every builder and by the
    collators."""
    return get_task(task_name).features(label_names)


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


class _CardEntry(NamedTuple):
    """What the card says about one config: YAML `configs:` and `dataset_info` items, table row, `###` section."""

    config: dict
    info: dict | None
    row: str | None
    section: list[str]


def _to_dataset(config: HubConfig, split: str, rows: list[dict]) -> datasets.Dataset:
    try:
        return datasets.Dataset.from_list(rows, features=config.features)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"config {config.name!r}, split {split!r}: rows do not match the features ({error})."
        ) from error


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:8]


def _write_config(folder: Path, config: HubConfig) -> _CardEntry:
    data_files, split_sizes = [], []
    (folder / config.name).mkdir()
    for split, rows in config.splits.items():
        dataset = _to_dataset(config, split, rows)
        written = folder / config.name / f"{split}.parquet"
        dataset.to_parquet(str(written))
        # datasets caches a local folder by its card alone: a content hash in the file name changes the card when the
        # rows change, so a rebuild with the same row counts is not answered from the cache with the old rows.
        path = Path(config.name) / f"{split}-{_content_hash(written)}.parquet"
        written.rename(folder / path)
        data_files.append({"split": split, "path": path.as_posix()})
        split_sizes.append({"name": split, "num_bytes": dataset.data.nbytes, "num_examples": len(rows)})
    sizes = ", ".join(f"{split} {len(rows):,}" for split, rows in config.splits.items())
    section = [f"### `{config.name}`", "", config.description, "", f"- Source: {config.source}"]
    section += [f"- License: {config.license}"] + [f"- {key}: {value}" for key, value in config.extra.items()]
    if config.citation:
        section += ["", "```bibtex", config.citation.strip(), "```"]
    return _CardEntry(
        config={"config_name": config.name, "data_files": data_files},
        info={"config_name": config.name, "features": config.features._to_yaml_list(), "splits": split_sizes},
        row=f"| `{config.name}` | {sizes} | {config.source} | {config.license} |",
        section=section,
    )


def _existing_entries(folder: Path) -> dict[str, _CardEntry]:
    """The card entries of every config in an existing dataset folder (none if it is missing or empty).

    Anything else that is not empty raises: the folder is about to be replaced, so it must be one we wrote.
    """
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return {}
    card = folder / "README.md"
    text = card.read_text() if card.is_file() else ""
    front, separator, body = text.removeprefix("---\n").partition("\n---\n")
    try:
        metadata = yaml.safe_load(front) if text.startswith("---\n") and separator else None
    except yaml.YAMLError:
        metadata = None
    if not isinstance(metadata, dict) or not metadata.get("configs"):
        raise ValueError(
            f"{folder} exists and is not a Hub dataset folder (no README.md with a YAML `configs:` list); it would "
            "be replaced, so choose a new output folder or empty this one."
        )
    infos = metadata.get("dataset_info") or []
    infos = {info.get("config_name", "default"): info for info in ([infos] if isinstance(infos, dict) else infos)}
    rows, sections, current = {}, {}, None
    for line in body.splitlines():
        if line.startswith("### `"):
            current = line.split("`")[1]
            sections[current] = [line]
        elif line.startswith("## ") or line.startswith("### "):
            current = None
        elif current is not None:
            sections[current].append(line)
        elif line.startswith("| `"):
            rows[line.split("`")[1]] = line
    entries = {}
    for config in metadata["configs"]:
        name = config.get("config_name", "default")
        section = sections.get(name, [])
        while section and not section[-1].strip():
            section.pop()
        entries[name] = _CardEntry(config, infos.get(name), rows.get(name), section)
    return entries


def _copy_entry(source: Path, destination: Path) -> None:
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, destination, symlinks=True)
    else:
        shutil.copy2(source, destination, follow_symlinks=False)


def _check_loads(folder: Path, entries: dict[str, _CardEntry]) -> None:
    """Load every config of `folder` as a user would and compare its split sizes with the card's."""
    with tempfile.TemporaryDirectory() as cache_dir:
        for name, entry in entries.items():
            try:
                loaded = datasets.load_dataset(str(folder), name, cache_dir=cache_dir)
            except Exception as error:
                raise ValueError(f"config {name!r} does not load from the written folder ({error}).") from error
            sizes = {split: loaded[split].num_rows for split in loaded}
            expected = {split["name"]: split["num_examples"] for split in (entry.info or {}).get("splits", ())}
            if expected and sizes != expected:
                raise ValueError(f"config {name!r} loads with split sizes {sizes}; its card says {expected}.")


def _swap_in(staging: Path, target: Path) -> None:
    """Replace `target` by `staging`: old folder aside, new one in, old one deleted (put back if the move fails)."""
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old)


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
    """Write `<output_dir>/<config>/<split>-<content hash>.parquet` for every config and a README.md dataset card.

    The folder is written beside `output_dir` and swapped in only once every config loads, so a failure leaves an
    existing `output_dir` as it was. Configs already in `output_dir` but not in `configs` are kept (files, card
    entries and sections), as is any other file there (e.g. `.gitattributes`).
    """
    output_dir = Path(output_dir)
    if output_dir.is_symlink():  # swap the folder the link points to, not the link
        output_dir = output_dir.resolve()
    if (output_dir / f"{output_dir.name}.py").exists():
        raise ValueError(f"{output_dir / (output_dir.name + '.py')} would make datasets treat the folder as a script.")
    names = [config.name for config in configs]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"expected one or more configs with distinct names, got {names}.")
    entries = _existing_entries(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.with_name(f".{output_dir.name}.tmp-{secrets.token_hex(4)}")
    staging.mkdir()
    progress_bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        for entry in output_dir.iterdir() if output_dir.exists() else ():
            if entry.name != "README.md" and entry.name not in names:
                _copy_entry(entry, staging / entry.name)
        for config in configs:
            entries[config.name] = _write_config(staging, config)
        metadata = {
            "license": license,
            "task_categories": list(task_categories),
            "tags": list(tags),
            "pretty_name": title,
            "configs": [entry.config for entry in entries.values()],
            "dataset_info": [entry.info for entry in entries.values() if entry.info is not None],
        }
        body = [f"# {title}", "", summary, "", "## Configs", ""]
        body += ["| config | splits (rows) | source | license |", "|---|---|---|---|"]
        body += [entry.row for entry in entries.values() if entry.row is not None]
        for entry in entries.values():
            if entry.section:
                body += [""] + entry.section
        body += [
            "",
            "## Usage",
            "",
            "```python",
            "from datasets import load_dataset",
            f'ds = load_dataset("path/to/this/folder", "{next(iter(entries))}")',
            "```",
        ]
        if citation:
            body += ["", "## Citation", "", "```bibtex", citation.strip(), "```"]
        front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
        (staging / "README.md").write_text("---\n" + front + "---\n\n" + "\n".join(body) + "\n")
        _check_loads(staging, entries)
        _swap_in(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if progress_bars:
            datasets.enable_progress_bars()
    return output_dir
