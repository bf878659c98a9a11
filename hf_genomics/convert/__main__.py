"""`python -m hf_genomics.convert {beacon,dnabert} SRC_DIR DST_DIR`: convert an upstream checkpoint folder into a
BEACON-B folder that loads with `AutoModelForMaskedLM.from_pretrained(DST_DIR)`."""

import argparse

from .checkpoints import POSITION_TYPE_OF_LAYOUT, convert_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hf_genomics.convert", description=__doc__)
    parser.add_argument("layout", choices=sorted(POSITION_TYPE_OF_LAYOUT), help="upstream checkpoint layout")
    parser.add_argument("source_dir", help="folder with config.json and model.safetensors / pytorch_model.bin")
    parser.add_argument("output_dir", help="where to write the converted model (created if needed)")
    args = parser.parse_args(argv)
    model = convert_checkpoint(args.layout, args.source_dir, args.output_dir)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"Converted {args.layout} checkpoint {args.source_dir} -> {args.output_dir} ({parameters:,} parameters)")


if __name__ == "__main__":
    main()
