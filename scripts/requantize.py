"""Rewrite checkpoint folders with int8 (or fp16) weight storage.

    python scripts/requantize.py src/faceweave/assets/models/parser-64         # in place
    python scripts/requantize.py parser-64 --out runs/parser-64-int8           # a bundled name, to a new folder
    python scripts/requantize.py collab-64 collab-64-real                      # several, in place
    python scripts/requantize.py runs/x/best --storage fp16                    # back to fp16

int8 storage (faceweave.checkpoint): every conv/linear weight (`*weight`, >= 2 dims, at least
--min-elements elements) becomes int8 with one fp16 scale per output channel (symmetric
absmax), every other floating tensor fp16; config.json gets "storage": "int8" and keeps its
other keys (metrics, training recipe); the folder's other files (model card, EMA tensors)
are copied unchanged. Loading dequantizes to float32, so every command reads the result as
before. Writes are atomic. int8 -> fp16 gives the dequantized weights, not the original ones.

A collab checkpoint checks its collaborators' fingerprints: converting it records the
fingerprint of each collaborator's int8 storage beside the original one, so convert the
collab checkpoint before (or together with) its collaborators; they are handled in that order.
A checkpoint with shared tensors (config.json "shared", e.g. gan-64's generator read from
stylegan2-64) comes out complete; share them again afterwards with
faceweave.checkpoint.share (docs/models.md, "Storage").
Measure a model before and after (docs/models.md, "Storage") before shipping the result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceweave import checkpoint
from faceweave.errors import FaceweaveError


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def requantize(source: str, out: str | None, storage: str, min_elements: int) -> tuple[Path, int, int]:
    """(written folder, bytes before, bytes after) for one checkpoint."""
    meta = checkpoint.read_config(source)
    folder = Path(meta["path"])
    before = _size(folder)
    collab = meta["family"] == "collab" and storage == "int8"
    if collab and out is None:
        from faceweave.backends.collab import add_int8_fingerprints
        add_int8_fingerprints(folder)              # checks the collaborators before anything is rewritten
    dest = checkpoint.convert(folder, out, storage=storage, int8_min_elements=min_elements)
    if collab and out is not None:
        from faceweave.backends.collab import add_int8_fingerprints
        add_int8_fingerprints(dest)
    return dest, before, _size(dest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", metavar="SRC", help="checkpoint folders or bundled model names")
    ap.add_argument("--out", help="write to this new folder instead of in place (one SRC only)")
    ap.add_argument("--storage", choices=checkpoint.STORAGES, default="int8", help="storage to write  [int8]")
    ap.add_argument("--min-elements", type=int, default=checkpoint.INT8_MIN_ELEMENTS,
                    help=f"smaller weights stay fp16  [{checkpoint.INT8_MIN_ELEMENTS}]")
    args = ap.parse_args(argv)
    if args.out and len(args.sources) > 1:
        ap.error("--out takes one SRC; convert several folders in place")
    try:
        # collab checkpoints first: they record their collaborators' int8 fingerprints from the
        # weights the collaborators hold before those are converted
        families = {s: checkpoint.read_config(s)["family"] for s in args.sources}
        for source in sorted(args.sources, key=lambda s: families[s] != "collab"):
            dest, before, after = requantize(source, args.out, args.storage, args.min_elements)
            print(f"{source}: {before / 2**20:.2f} MiB -> {after / 2**20:.2f} MiB ({args.storage}) in {dest}")
    except FaceweaveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
