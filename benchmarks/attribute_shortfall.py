"""Which attributes an evaluation loses its attribute checks on, against the real faces' ceiling.

    faceweave evaluate --backend diffusion --model diffusion-64 --given prompt,mask --n 500 --out runs/eval_pm
    python benchmarks/attribute_shortfall.py runs/eval_pm/metrics.json
    python benchmarks/attribute_shortfall.py docs/notes/evaluations/prompt_mask.json

For each attribute that was checked: how many (image, attribute) checks there were, the
accuracy of the outputs and of the real faces, and the checks lost against the ceiling,
n * (ceiling - run), with its share of all the checks lost. The last line says how many
more correct checks would bring attr_acc to a share of the ceiling (--target, 0.9 by
default: the diffusion backend's target given prompt + mask).

a recent metrics.json records each attribute's number of checks
(details.run.per_attribute_checked). For older files they are recounted from the protocol
the file records (the first n faces of the FaceSynth split it names, the conditions it
names), and the recount must add up to the file's attributes_checked.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def checks_per_attribute(metrics: dict) -> dict[str, int]:
    """{attribute: number of checks} from metrics.json, recounted from its protocol if absent."""
    run = metrics["details"]["run"]
    if "per_attribute_checked" in run:
        return dict(run["per_attribute_checked"])
    from faceweave import synth
    from faceweave.data.unified import facesynth_seed
    from faceweave.eval.evaluate import requested_attributes

    protocol = metrics["protocol"]
    seed, given = facesynth_seed(protocol["split"]), protocol["given"]
    counts = dict.fromkeys(run["per_attribute"], 0)
    for i in range(metrics["n"]):
        for name in requested_attributes(synth.render(seed, i, protocol["size"]), given) or {}:
            counts[name] = counts.get(name, 0) + 1
    if sum(counts.values()) != run["attributes_checked"]:
        raise SystemExit(f"recounted {sum(counts.values())} checks from the protocol, but the file says "
                         f"{run['attributes_checked']}: it was not written under the protocol it records")
    return counts


def shortfall(metrics: dict, target: float = 0.9) -> tuple[list[dict], dict]:
    """Rows (most checks lost first) and a summary for one metrics.json."""
    if metrics.get("attr_acc") is None:
        raise SystemExit("this evaluation checked no attributes (--given had neither a prompt nor attributes)")
    counts = checks_per_attribute(metrics)
    run, ceiling = metrics["details"]["run"]["per_attribute"], metrics["details"]["ceiling"]["per_attribute"]
    rows = []
    for name, n in counts.items():
        if n:
            lost = n * (ceiling[name] - run[name])
            rows.append({"attribute": name, "checks": n, "run": run[name], "ceiling": ceiling[name], "lost": lost})
    total_lost = sum(r["lost"] for r in rows)
    for r in rows:
        r["share"] = r["lost"] / total_lost if total_lost > 0 else None
    rows.sort(key=lambda r: -r["lost"])
    checks = sum(counts.values())
    wanted = target * metrics["ceiling"]["attr_acc"]
    summary = {"checks": checks, "attr_acc": metrics["attr_acc"], "ceiling": metrics["ceiling"]["attr_acc"],
               "lost": total_lost, "target": target, "needed": max(0.0, (wanted - metrics["attr_acc"]) * checks)}
    return rows, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics", type=Path, help="a metrics.json written by faceweave evaluate")
    ap.add_argument("--target", type=float, default=0.9, help="share of the ceiling's attr_acc to aim at")
    ap.add_argument("--top", type=int, default=None, help="only the N attributes losing the most checks")
    args = ap.parse_args()
    if not 0 < args.target <= 1:
        ap.error(f"--target must be a share of the ceiling in (0, 1], got {args.target}")
    try:
        metrics = json.loads(args.metrics.read_text())
        metrics["details"]["run"]["per_attribute"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        ap.error(f"{args.metrics}: not a metrics.json written by faceweave evaluate ({type(e).__name__}: {e})")
    rows, s = shortfall(metrics, args.target)
    print("| attribute | checks | run | ceiling | checks lost | share of the loss |")
    print("|---|---|---|---|---|---|")
    for r in rows[:args.top]:
        share = "—" if r["share"] is None else f"{100 * r['share']:.1f} %"
        print(f"| {r['attribute']} | {r['checks']} | {r['run']:.3f} | {r['ceiling']:.3f} | {r['lost']:.1f} | {share} |")
    print(f"\nattr_acc {s['attr_acc']:.4f} of a ceiling {s['ceiling']:.4f} ({100 * s['attr_acc'] / s['ceiling']:.1f} %) "
          f"over {s['checks']} checks: {s['lost']:.0f} checks lost; {s['needed']:.0f} more correct checks reach "
          f"{100 * s['target']:.0f} % of the ceiling")


if __name__ == "__main__":
    sys.exit(main())
