"""Fingerprints of what every bundled default model makes through the CLI, to prove a change
of code kept every output (and so every score) as it was.

    python benchmarks/outputs_digest.py --out before.npz      # on the old code
    python benchmarks/outputs_digest.py --compare before.npz  # on the new: exit 1 on a change

Make both files on the same machine: another CPU's kernels round differently, and an
inversion's optimisation carries that rounding into its latent (about 1e-3 between two of
our 2-core machines), which says nothing about the code.

Each case runs one `faceweave generate`, `edit` or `invert` command with few steps and fixed
seeds, and keeps every PNG and safetensors tensor it wrote. Identical pixels mean identical
scores under any metric; a changed case is named, so the score behind it must be re-measured.
Floating-point sums can differ in their last bits between two processes (the CPU kernels a
process picks depend on what it ran before), so an inversion's latent is compared to 1e-4
and its images to one grey level, and the report says which cases were bit-identical.
Edits and inversions read the photos in ../shared/data/real (skipped, and said so, when
absent).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
REAL = ROOT.parent / "shared" / "data" / "real" / "pairs"

CASES: dict[str, list[str]] = {
    "generate diffusion-64-real": ["generate", "--prompt", "a smiling woman with blond hair", "--mask",
                                   str(EX / "mask_real_woman.png"), "--seeds", "0-1", "--steps", "4"],
    "generate diffusion-64 layout prior": ["generate", "--model", "diffusion-64", "--prompt", "a bald man",
                                           "--seeds", "3", "--steps", "4"],
    "generate diffusion-64 sketch ddim": ["generate", "--model", "diffusion-64", "--sketch",
                                          str(EX / "sketch_woman.png"), "--seeds", "1", "--steps", "3",
                                          "--sampler", "ddim", "--ddim-eta", "0.5"],
    "generate diffusion-64 heun window": ["generate", "--model", "diffusion-64", "--prompt", "a woman with bangs",
                                          "--mask", str(EX / "mask_woman.png"), "--seeds", "2", "--steps", "5",
                                          "--sampler", "heun", "--guidance-window", "0.3,0.7", "--scale",
                                          "prompt=3"],
    "generate collab-64": ["generate", "--backend", "collab", "--model", "collab-64", "--prompt", "a man with a beard",
                           "--mask", str(EX / "mask_woman.png"), "--seeds", "0", "--steps", "4", "--save-influence"],
    "generate collab-64-real": ["generate", "--backend", "collab", "--prompt", "a man with a beard", "--mask",
                                str(EX / "mask_real_man.png"), "--seeds", "0", "--steps", "4", "--save-influence"],
    "generate gan-64": ["generate", "--backend", "gan", "--prompt", "a smiling man", "--mask",
                        str(EX / "mask_woman.png"), "--seeds", "0-1", "--diversity", "0.3"],
    "edit diffusion-64-real": ["edit", "--image", str(REAL / "edit_27044.jpg"), "--mask",
                               str(REAL / "edit_27044_mask_no_smile_no_earrings.png"), "--steps", "4"],
    "edit collab-64": ["edit", "--backend", "collab", "--model", "collab-64", "--image", str(REAL / "maskgan_0.jpg"), "--prompt",
                       "a smiling woman", "--steps", "3", "--embed-steps", "2", "--finetune-steps", "1"],
    "edit gan-64": ["edit", "--backend", "gan", "--image", str(REAL / "maskgan_1.jpg"), "--prompt", "smiling",
                    "--steps", "2"],
    "invert diffusion-64-real": ["invert", str(REAL / "maskgan_2.jpg"), "--steps", "4"],
    "invert gan-64": ["invert", str(REAL / "maskgan_3.jpg"), "--backend", "gan", "--steps", "2"],
}


def run_case(args: list[str]) -> dict[str, np.ndarray]:
    from click.testing import CliRunner
    from safetensors.numpy import load_file

    from faceweave.cli import main
    from faceweave.io import read_image

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        result = CliRunner().invoke(main, [*args, "--out", str(out), *(["--quiet"] if args[0] != "invert" else [])])
        if result.exit_code != 0:
            raise SystemExit(f"{' '.join(args)}: exit {result.exit_code}: {result.output.strip()}")
        arrays = {}
        for path in sorted(out.iterdir()):
            if path.suffix == ".png":
                arrays[path.name] = read_image(path)
            elif path.suffix == ".safetensors":
                arrays.update({f"{path.name}:{k}": v for k, v in load_file(path).items()})
        return arrays


def compare(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> str:
    """"identical", "within tolerance (...)" or "CHANGED: ..."."""
    if sorted(old) != sorted(new):
        return f"CHANGED: files {sorted(old)} -> {sorted(new)}"
    worst = []
    for key in old:
        a, b = old[key], new[key]
        if a.shape != b.shape:
            return f"CHANGED: {key} shape {a.shape} -> {b.shape}"
        if np.array_equal(a, b):
            continue
        diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
        limit = 1.0 if a.dtype == np.uint8 else 1e-4
        if diff > limit:
            return f"CHANGED: {key} differs by up to {diff:g}"
        worst.append(f"{key} {diff:g}")
    return "identical" if not worst else "within tolerance (" + ", ".join(worst) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the outputs to this .npz file")
    parser.add_argument("--compare", help="compare with a .npz file written by --out; exit 1 on a change")
    args = parser.parse_args()
    digests, changed, exact = {}, [], 0
    old = None
    if args.compare:
        old = {}
        for key, value in np.load(args.compare).items():
            case, _, name = key.partition("|")
            old.setdefault(case, {})[name] = value
    for name, case in CASES.items():
        if case[0] in ("edit", "invert") and not REAL.is_dir():
            print(f"{name}: skipped ({REAL} is absent)")
            continue
        t0 = time.perf_counter()
        digests[name] = run_case(case)
        verdict = ""
        if old is not None:
            verdict = "  " + (compare(old[name], digests[name]) if name in old else "CHANGED: not in the old file")
            changed += [name] if "CHANGED" in verdict else []
            exact += verdict == "  identical"
        print(f"{name}: {len(digests[name])} files, {time.perf_counter() - t0:.1f} s{verdict}", flush=True)
    if args.out:
        np.savez_compressed(args.out, **{f"{case}|{k}": v for case, arrays in digests.items() for k, v in arrays.items()})
    if old is not None:
        print(f"{len(digests) - len(changed)} of {len(digests)} cases unchanged ({exact} bit-identical)"
              + (f"; changed: {', '.join(changed)}" if changed else ""))
        sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
