"""W+ codes of a data set's photos by GAN inversion, to train a mapper on (pairs=projected).

    python scripts/project_codes.py --model gan-64-real --data celebamask1k:64 \
        --steps 100 --out runs/codes-64-real.safetensors [--part 1/2]
    python scripts/project_codes.py --merge runs/codes-1.safetensors runs/codes-2.safetensors \
        --out runs/codes-64-real.safetensors

Every photo of the split (`--split`, default train; unflipped) is inverted as `faceweave
invert --backend gan` inverts a face: the model's encoder, then `--steps` projector steps
(pixel + feature loss, one seeded generator per photo, so a batch gives what single runs
give). The encoder alone follows a real layout less well than the projector's refinement
(benchmarks/gan_mask_ceiling.py --invert-steps 0,100), so a mapper regressing these codes
(`faceweave train gan --set pairs=projected --set codes=FILE`) aims at better targets.

With `--guide FOLDER --mask-weight W` the projector also minimises W times a guide parser's
cross-entropy to the photo's own label map (a parser of its own, never the ruler's:
train/guide.py refuses those), so the codes draw the hand-made layout more closely; with
`--init-codes FILE` it starts from that bank's codes instead of the encoder's:

    python scripts/project_codes.py --init-codes runs/codes-64-real.safetensors --steps 50 \
        --guide runs/guide-parser-64/best --mask-weight 1 --out runs/codes-64-real-guided.safetensors

The file: safetensors with "wplus" (N, num_ws, w_dim) float32; its metadata lists the files
(JSON), the generator's weight fingerprint (a training run refuses codes of another
generator), the model and the steps. Written after every batch (atomically), so an
interrupted run continues where it stopped; `--part K/M` does the K-th of M interleaved
shares, for several processes, and `--merge` joins the shares.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from faceweave.backends.gan.codes import read_codes, write_codes


def _mask_term(guide, masks: torch.Tensor, weight: float, images: torch.Tensor) -> torch.Tensor:
    from faceweave.train.guide import guide_ce
    return weight * guide_ce(guide, images, masks)


def merge(parts: list[Path], out: Path) -> None:
    codes, metas = {}, []
    for part in parts:
        c, m = read_codes(part)
        codes.update(c)
        metas.append({k: v for k, v in m.items() if k not in ("files", "n", "part")})
    if any(m != metas[0] for m in metas):
        sys.exit("these files were made with different settings (model, generator or steps); merge like with like")
    write_codes(out, codes, metas[0])
    print(f"wrote {out}: {len(codes)} codes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gan-64-real", help="a gan checkpoint with an inversion encoder")
    ap.add_argument("--data", default="celebamask1k:64")
    ap.add_argument("--split", default="train")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--guide", help="a guide parser's folder (faceweave train parser --preset guide64)")
    ap.add_argument("--mask-weight", type=float, default=0.0, help="weight of the guide's mask term (needs --guide)")
    ap.add_argument("--init-codes", type=Path, help="start from this bank's codes instead of the encoder's")
    ap.add_argument("--part", default="1/1", help="K/M: the K-th of M interleaved shares")
    ap.add_argument("--merge", nargs="+", type=Path, help="join these code files into --out")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    from faceweave import checkpoint
    from faceweave.backends.gan.pipeline import GANPipeline
    from faceweave.data import open_dataset
    from faceweave.projector import project

    if args.mask_weight and not args.guide:
        sys.exit("--mask-weight needs --guide FOLDER (a parser of its own: faceweave train parser --preset guide64)")
    k, m = (int(v) for v in args.part.split("/"))
    pipe = GANPipeline.from_pretrained(args.model)
    G = pipe.model.generator.requires_grad_(False)
    if pipe.model.encoder is None:
        sys.exit(f"{args.model} has no inversion encoder")
    data = open_dataset(args.data, size=G.config.size, split=args.split)
    data.flip = data.jitter = False                   # the photos as stored: one code per file
    mine = [i for i in range(len(data)) if i % m == k - 1]
    meta = {"model": str(args.model), "generator": checkpoint.fingerprint(G.state_dict()),
            "steps": str(args.steps), "data": args.data, "split": args.split, "part": args.part}
    guide = bank = None
    if args.mask_weight:
        from faceweave.train.guide import load_guide
        guide = load_guide(args.guide, "cpu")
        meta.update(guide=str(args.guide), mask_weight=str(args.mask_weight))
    if args.init_codes:
        bank, bank_meta = read_codes(args.init_codes)
        if bank_meta.get("generator") != meta["generator"]:
            sys.exit(f"{args.init_codes} holds codes of another generator; start from the encoder instead")
        meta["init_codes"] = str(args.init_codes)
    codes: dict[str, torch.Tensor] = {}
    if args.out.is_file():
        codes, old = read_codes(args.out)
        if {k2: v for k2, v in old.items() if k2 not in ("files", "n")} != meta:
            sys.exit(f"{args.out} was made with other settings; choose another --out")
    records = getattr(data, "records", None)          # a folder's file names, without reading its images
    todo = [i for i in mine if (records[i]["file"] if records else data[i]["file"]) not in codes]
    print(f"{len(mine)} photos in this share, {len(mine) - len(todo)} done, {len(todo)} to go "
          f"({args.steps} projector steps, {torch.get_num_threads()} threads)", flush=True)
    for start in tqdm(range(0, len(todo), args.batch), desc="project", unit="batch"):
        chunk = [data[i] for i in todo[start:start + args.batch]]
        x = torch.stack([s["image"] for s in chunk])
        if bank is not None:
            missing = [s["file"] for s in chunk if s["file"] not in bank]
            if missing:
                sys.exit(f"{args.init_codes} has no code for {missing[0]}; project that split with it first")
            init = torch.stack([bank[s["file"]] for s in chunk])
        else:
            with torch.no_grad():
                init = pipe.model.encoder(x)
        gens = [torch.Generator().manual_seed(0) for _ in chunk]
        extra = None
        if guide is not None:
            masks = torch.stack([s["mask"] for s in chunk])
            extra = partial(_mask_term, guide, masks, args.mask_weight)
        result = project(G, x, init_wplus=init, steps=args.steps, generator=gens, extra_loss=extra)
        for s, w in zip(chunk, result.wplus.detach().float()):
            codes[s["file"]] = w.clone()
        write_codes(args.out, codes, meta)
    print(f"wrote {args.out}: {len(codes)} codes")


if __name__ == "__main__":
    main()
