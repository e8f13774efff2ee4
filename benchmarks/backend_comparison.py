"""One table of the generation backends on the real protocol, with their photo edits beside.

    for b in diffusion collab gan ddgi; do
      faceweave evaluate --backend $b --model $b-64-real --data celebamask1k --n 69 \
          --seeds-per-condition 1 --out runs/eval-cmp-$b
    done
    python benchmarks/edit_comparison.py --n 4 --json runs/edit-comparison.json
    python benchmarks/backend_comparison.py runs/eval-cmp-*/metrics.json --edits runs/edit-comparison.json
    # backends re-run later: their edit file after the first one
    python benchmarks/backend_comparison.py ... --edits runs/edit-comparison.json runs/edit-comparison-new.json

Prints a markdown table, one row per metrics.json (all must share the protocol: the same
masks, captions and seeds): mask mIoU with its share of the real photos' own (the ceiling),
attribute accuracy, how often the generated gender follows the caption ("Male"), fd with
its multiple of real-vs-real, memorised, seconds per image in batches of 16 and for one image
alone (latency_batch1), each with the diffusion row's seconds divided by it (the speed-up
the issue targets name; the slowest row's without a diffusion row); then, from edit_comparison.py's JSON, each backend's mean identity distance over all
its edits (photo vs edited photo, dlib), how many were under 0.5, and seconds per edit.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics", nargs="+", type=Path)
    ap.add_argument("--edits", type=Path, nargs="+", default=[],
                    help="JSON files of benchmarks/edit_comparison.py (a backend in a later file replaces "
                         "its row from an earlier one)")
    args = ap.parse_args()
    runs = [json.loads(p.read_text()) for p in args.metrics]
    protocols = {json.dumps({k: v for k, v in r["protocol"].items() if k not in ("backend", "model", "timing")},
                            sort_keys=True) for r in runs}
    if len(protocols) > 1:
        raise SystemExit("these metrics.json files were made with different protocols; compare like with like")
    edits: dict = {}
    for path in args.edits:
        edits.update(json.loads(path.read_text())["results"])
    ceiling = runs[0]["ceiling"]
    base = next((r for r in runs if r["protocol"]["backend"]["backend"] == "diffusion"),
                max(runs, key=lambda r: r["sec_per_image"]))
    slowest, slowest_one = base["sec_per_image"], base["latency_batch1"]
    print(f"n = {runs[0]['n']}; real photos (ceiling): mask mIoU {ceiling['mask_miou']:.4f}, attribute accuracy "
          f"{ceiling['attr_acc']:.4f}, fd {ceiling['fd']:.4f}")
    print()
    print("| backend (model) | mask mIoU (x photos') | attr acc | Male follows | fd (x real) | memorised "
          "| s / image, batch 16 (x faster) | s / image alone (x faster) | edits: identity distance (< 0.5) | s / edit |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        backend = r["protocol"]["backend"]
        name, model = backend["backend"], backend.get("model") or "default"
        male = r["details"]["run"]["per_attribute"].get("Male")
        cells = [f"{name} (`{Path(str(model)).name}`)",
                 f"{r['mask_miou']:.4f} ({r['mask_miou'] / ceiling['mask_miou']:.0%})",
                 f"{r['attr_acc']:.4f}", "—" if male is None else f"{male:.3f}",
                 f"{r['fd']:.4f} ({r['fd'] / ceiling['fd']:.2f}x)", f"{r['memorised']:.2f}",
                 f"{r['sec_per_image']:.4f} ({slowest / r['sec_per_image']:.1f}x)",
                 f"{r['latency_batch1']:.4f} ({slowest_one / r['latency_batch1']:.1f}x)"]
        record = edits.get(name)
        if record:
            rows = list(record["edits"].values())
            dist = [d for row in rows for d in row["identity"]]
            under = sum(d < 0.5 for d in dist)
            cells += [f"{sum(dist) / len(dist):.3f} ({under}/{len(dist)})",
                      f"{sum(row['seconds'] for row in rows) / len(rows):.1f}"]
        else:
            cells += ["—", "—"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
