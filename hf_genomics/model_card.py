"""Write a Hugging Face Hub model card (README.md with YAML front matter) into a saved model folder."""

import json
import os
from pathlib import Path

# The Hub's pipeline tag for each head, read from the folder's config.json `architectures`.
PIPELINE_TAG_OF_HEAD = {
    "ForMaskedLM": "fill-mask",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
}


def _pipeline_tag(folder: Path) -> str:
    config_file = folder / "config.json"
    architectures = (json.loads(config_file.read_text()).get("architectures") or []) if config_file.exists() else []
    for suffix, tag in PIPELINE_TAG_OF_HEAD.items():
        if any(name.endswith(suffix) for name in architectures):
            return tag
    return "feature-extraction"


def _yaml_list(key: str, values) -> list[str]:
    # JSON strings are valid YAML scalars, which keeps names with ':' or '#' safe without a YAML dependency.
    return [f"{key}:", *(f"- {json.dumps(str(value))}" for value in values)] if values else []


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    model_name: str,
    base_model: str | None = None,
    datasets=(),
    tags=(),
    training_summary: str = "",
    metrics: dict | None = None,
    license: str = "apache-2.0",
) -> Path:
    """Write `output_dir/README.md`: Hub YAML front matter (license, library_name, pipeline_tag, tags, datasets,
    base_model) and a body with usage, the training summary and a metrics table. Returns the card's path.

    The pipeline tag follows the saved head (`config.json` `architectures`): fill-mask, text-classification,
    token-classification, else feature-extraction.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; save the model there first (model.save_pretrained).")
    if not model_name:
        raise ValueError("model_name must be a non-empty string (e.g. 'my-org/beacon-b-ncrna').")
    pipeline_tag = _pipeline_tag(folder)
    all_tags = list(dict.fromkeys(["hf_genomics", "biology", "genomics", *tags]))
    front_matter = [
        "---",
        f"license: {license}",
        "library_name: transformers",
        f"pipeline_tag: {pipeline_tag}",
        *_yaml_list("tags", all_tags),
        *_yaml_list("datasets", datasets),
        *([f"base_model: {json.dumps(base_model)}"] if base_model else []),
        "---",
    ]
    body = [
        f"# {model_name}",
        "",
        training_summary or "A DNA/RNA language model saved with hf_genomics.",
        "",
        "## Usage",
        "",
        "```python",
        "import hf_genomics  # registers the model and tokenizer classes; or pass trust_remote_code=True",
        "from transformers import AutoModel, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{model_name}", trust_remote_code=True)',
        f'model = AutoModel.from_pretrained("{model_name}", trust_remote_code=True)',
        'outputs = model(**tokenizer(["ACGUAGCUAGCUAGGCU"], return_tensors="pt"))',
        "```",
    ]
    if base_model:
        body += ["", f"Fine-tuned from `{base_model}`."]
    if metrics:
        body += ["", "## Results", "", "| metric | value |", "|---|---|"]
        body += [f"| {name} | {value} |" for name, value in metrics.items()]
    path = folder / "README.md"
    path.write_text("\n".join(front_matter + [""] + body) + "\n")
    return path


__all__ = ["write_model_card"]
