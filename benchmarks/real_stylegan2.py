"""Score StyleGAN2 checkpoints' unconditional samples with the real-face ruler.

    python benchmarks/real_stylegan2.py --models stylegan2-64,runs/sg2/best [--n 69] [--grid out.png]

For each checkpoint: n samples (z of seeds 0..n-1, truncation 1), against the celebamask-1k
photos at the generator's size, the way `faceweave evaluate --data celebamask1k` scores.

fd          Frechet distance of dlib identity embeddings, samples vs training photos 0..n-1
            (the reference `faceweave evaluate --data celebamask1k` uses)
real_fd     the ceiling: the n held-out photos vs the same reference (real vs real)
fd_ratio    fd / real_fd (the realism target is a ratio, at the same n)
memorised   share of samples whose nearest training photo is closer than the 1st percentile
            of the held-out photos' nearest-training distances (faceweave.eval.real)
sec_per_image  generator wall clock per image, batches of 16, this machine's CPU
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from faceweave import io
from faceweave.eval import faces
from faceweave.eval.real import RealProtocol, memorisation
from faceweave.backends.gan.train import load_generator


def samples(G, n: int) -> tuple[np.ndarray, float]:
    out, start = [], time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, 16):
            seeds = range(i, min(n, i + 16))
            z = torch.stack([torch.randn(G.config.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
            x = G([z], randomize_noise=False)[0]
            out.append(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out), (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="stylegan2-64", help="comma-separated checkpoints or bundled names")
    ap.add_argument("--n", type=int, default=69, help="samples and held-out photos (celebamask-1k val has 69)")
    ap.add_argument("--grid", default=None, help="write the first 32 samples of each model to this PNG")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU", "models": {}}
    grids = []
    protocol = None
    for ref in args.models.split(","):
        G, meta = load_generator(ref)
        size = int(meta["config"]["size"])
        if protocol is None or protocol.size != size:
            protocol = RealProtocol("celebamask1k", size)
            n = min(args.n, protocol.max_n)
            held_emb = faces.identity_embeddings(np.stack([protocol.condition(i).image for i in range(n)]))
            bank_emb = faces.identity_embeddings(protocol.bank_images())
            ref_emb = bank_emb[:n]                      # training photos 0..n-1, as evaluate's reference
            real_fd = faces.frechet_identity_distance(held_emb, ref_emb)
        fake, spi = samples(G, n)
        emb = faces.identity_embeddings(fake)
        fd = faces.frechet_identity_distance(emb, ref_emb)
        mem = memorisation(emb, bank_emb, held_emb)
        results["models"][ref] = {"size": size, "n": n, "fd": round(float(fd), 4), "real_fd": round(float(real_fd), 4),
                                  "fd_ratio": round(float(fd / real_fd), 3),
                                  "memorised": mem.get("memorised"), "sec_per_image": round(spi, 5),
                                  "step": (meta.get("training") or {}).get("step")}
        print(ref, json.dumps(results["models"][ref]))
        grids.append(fake[:32])
    if args.grid:
        from faceweave.data.sheet import image_grid
        io.write_png(args.grid, image_grid(list(np.concatenate(grids)), columns=16))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
