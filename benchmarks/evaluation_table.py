"""Markdown rows for docs/evaluation.md from `faceweave evaluate` outputs, so no number is typed.

    faceweave evaluate --backend copy --n 500 --size 64 --out runs/eval_copy
    python benchmarks/evaluation_table.py runs/eval_copy/metrics.json [more metrics.json ...]

Prints the ceiling (the real held-out faces) once per distinct --given, then one row per
run, with the columns of docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("mask_miou", "mask_pixel_acc", "attr_acc", "sketch_f", "fd", "kid", "fid", "diversity",
           "sec_per_image")


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _row(name: str, given: str, n: int, scores: dict) -> str:
    return "| " + " | ".join([name, given, str(n), *(_cell(scores.get(c)) for c in COLUMNS)]) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics", nargs="+", type=Path, help="metrics.json files written by faceweave evaluate")
    args = ap.parse_args()
    runs = [json.loads(path.read_text()) for path in args.metrics]
    print("| row | given | n | " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * (3 + len(COLUMNS)))
    ceilings = {}
    for metrics in runs:
        ceilings.setdefault((",".join(metrics["protocol"]["given"]) or "none", metrics["n"]), metrics["ceiling"])
    for (given, n), scores in ceilings.items():
        print(_row("ceiling (real test faces)", given, n, scores))
    for metrics in runs:
        protocol = metrics["protocol"]
        print(_row(protocol["backend"]["backend"], ",".join(protocol["given"]) or "none", metrics["n"], metrics))


if __name__ == "__main__":
    main()
