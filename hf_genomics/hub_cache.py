"""Publish a saved folder into the local Hugging Face cache under a Hub-style repo id.

After ``publish_to_local_cache("out/model", "hf-genomics/beacon-b-tiny")``,
``AutoModel.from_pretrained("hf-genomics/beacon-b-tiny")`` works with ``HF_HUB_OFFLINE=1``
exactly as after a download: the files sit in ``models--hf-genomics--beacon-b-tiny`` as content-
addressed blobs, a snapshot of relative symlinks, and ``refs/main`` naming the snapshot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.file_download import repo_folder_name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish_to_local_cache(
    folder: str | os.PathLike, repo_id: str, *, repo_type: str = "model", cache_dir: str | os.PathLike | None = None
) -> Path:
    """Copy every file of ``folder`` into the Hub cache as repo ``repo_id``; return the snapshot path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a directory: save a model or dataset there first.")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'namespace/name', got {repo_id!r}.")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"{folder} is empty: nothing to publish.")

    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    hashes = {p.relative_to(folder).as_posix(): _sha256(p) for p in files}
    # A stable pseudo commit id: the same files always give the same snapshot.
    commit = hashlib.sha1("".join(f"{k}:{v}\n" for k, v in sorted(hashes.items())).encode()).hexdigest()

    snapshot = storage / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    for relative, digest in hashes.items():
        blob = storage / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(folder / relative, blob)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return snapshot
