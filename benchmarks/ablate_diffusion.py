"""Ablations of the diffusion backend, scored with the `faceweave evaluate` protocol.

    # guidance on/off per modality, one trained model (minutes on a CPU at --n 200)
    python benchmarks/ablate_diffusion.py guidance --model diffusion-64 --n 200 --out runs/ablate_guidance

    # design choices, one training run each (a 2-core CPU: 65 min to 2.5 h of training by
    # the machine, 5-12 images/s at batch 32, + ~15 min scoring per variant at --steps 1500,
    # the docs' table; a GPU can afford more --steps)
    python benchmarks/ablate_diffusion.py train --steps 1500 --n 500 --out runs/ablate_train
    # ... or some variants only; run again after a stop and it goes on where it was
    python benchmarks/ablate_diffusion.py train --steps 1500 --n 500 --out runs/ablate_train --only "mask tokens"
    # ... keeping each scored variant in a file to commit, for machines whose runs/ is gone
    python benchmarks/ablate_diffusion.py train --steps 1500 --n 500 --out runs/ablate_train \
        --kept benchmarks/results/ablate_train.json

    # where each loss weighting puts the training signal, by noise level (no model, instant)
    python benchmarks/ablate_diffusion.py weights

    # where euler_ancestral adds fresh noise: only at steps from sigma >= s_tmin, deterministic
    # below (~7 min per setting at --n 100 on a 2-core CPU shared with a training run)
    python benchmarks/ablate_diffusion.py noise --n 100 --s-tmin 0,0.3,1,3,1000 --out runs/ablate_noise

`guidance` samples the same held-out conditions (prompt + mask) under: no guidance, one
scale for all conditions, and one modality guided at a time. `train` trains the s64 recipe
with one change per variant (mask as tokens / spatial / both; loss weighting edm / uniform
/ p2 / min_snr) for the same number of steps and evaluates each. Both print a markdown
table (the numbers in docs/diffusion.md come from here; `train` adds each scored checkpoint's
validation loss, EDM-weighted for every variant, with all conditions and with none) and
write OUT/ablation.json. `noise` samples the same held-out conditions (prompt + mask, one
image per condition) with euler_ancestral limited to s_tmin (fresh noise only at the steps
from a sigma >= s_tmin; 0 is the default sampler, a value above sigma_max = 80 is
deterministic DDIM), with the accuracy of the attributes whose drawing is fine shading
beside the usual columns. `weights` prints, for the training noise levels of the --preset
recipe (s64: ln sigma ~ N(-1.2, 1.2^2)), each weighting's share of the training signal per band of
sigma: its weight divided by EDM's (EDM's preconditioning gives the network a unit-variance
target at every level, so that ratio is the relative pull of each level, to first order),
summed over the noise levels drawn in the band, as a share of its total.

`train` is meant to span several interrupted runs on a CPU (up to ~2.75 h per variant there): a variant whose run
stopped early (Ctrl-C, SIGTERM, a kill) is resumed to --steps, never scored half-trained,
and each variant's scores are kept in its run folder (scores.json), so a second call only
trains and scores what is missing. A signal stops the whole script after the checkpoint.
With --kept FILE the scores are also kept in FILE (one entry per variant, with the protocol
they were scored under): a variant found there under the same protocol is neither trained
nor scored again, even where its run folder no longer exists (a fresh checkout).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from itertools import pairwise
from pathlib import Path

GUIDANCE = {
    "off (1.0)": 1.0,
    "all 2.0": 2.0,
    "all 4.0": 4.0,
    "prompt 3.0": {"prompt": 3.0},
    "mask 3.0": {"mask": 3.0},
}
TRAIN_VARIANTS = {
    "mask both, edm (default)": {},
    "mask tokens": {"mask_mode": "tokens"},
    "mask spatial": {"mask_mode": "spatial"},
    "uniform weighting": {"weighting": "uniform"},
    "p2 weighting": {"weighting": "p2"},
    "min-snr weighting": {"weighting": "min_snr"},
}
COLUMNS = ("mask_miou", "attr_acc", "fd", "diversity", "sec_per_image")
# train: the scored checkpoint's validation loss (EDM-weighted whatever the variant's weighting,
# so the variants compare), with all conditions and with none
VALIDATION = ("val_loss", "val_loss_uncond")
# noise: the cues drawn as fine shading (cheekbones, make-up, bags) and two frequently asked cues
# whose accuracy the ancestral noise moved in the sampler comparison of docs/diffusion.md (smiling, young)
FINE_ATTRIBUTES = ("High_Cheekbones", "Heavy_Makeup", "Bags_Under_Eyes", "Smiling", "Young")


def _table(rows: dict[str, dict], ceiling: dict | None) -> str:
    columns = (VALIDATION if any(VALIDATION[0] in m for m in rows.values()) else ()) + COLUMNS
    columns += tuple(a for a in FINE_ATTRIBUTES if any(a in m for m in rows.values()))
    lines = ["| setting | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    if ceiling:
        lines.append("| ceiling (real faces) | " + " | ".join(
            "—" if ceiling.get(c) is None else f"{ceiling[c]:.4f}" for c in columns) + " |")
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join("—" if m.get(c) is None else f"{m[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)


def _validation(run: Path) -> dict[str, float]:
    """The validation losses of the checkpoint a variant was scored with (its export's
    config.json records them), or {} where the run folder is gone."""
    config = run / "export" / "config.json"
    if not config.exists():
        return {}
    val = (json.loads(config.read_text()).get("training") or {}).get("val") or {}
    return {k: val[k] for k in VALIDATION if k in val}


def _write_kept(path: Path, kept: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _instruments(size: int):
    from faceweave.ruler import load_classifier, load_parser
    return load_parser(size=size), load_classifier(size=size)


def ablate_guidance(args) -> tuple[dict, dict]:
    from faceweave.backends.diffusion.pipeline import DiffusionBackend, _normalise_scale
    from faceweave.eval.evaluate import evaluate

    parser, classifier = _instruments(args.size)
    backend = DiffusionBackend(args.model, steps=args.steps, sampler=args.sampler)
    rows, ceiling = {}, None
    for name, scale in GUIDANCE.items():
        backend.options["guidance_scale"] = _normalise_scale(scale)
        t0 = time.perf_counter()
        result = evaluate(backend, given="prompt,mask", n=args.n, size=args.size, seeds_per_condition=2,
                          parser=parser, classifier=classifier, progress=not args.quiet)
        rows[name] = {k: result.metrics[k] for k in COLUMNS}
        ceiling = result.metrics["ceiling"]
        print(f"{name}: {rows[name]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows, ceiling


def ablate_noise(args) -> tuple[dict, dict]:
    from faceweave.backends.diffusion import DiffusionBackend
    from faceweave.eval.evaluate import evaluate

    parser, classifier = _instruments(args.size)
    backend = DiffusionBackend(args.model, steps=args.steps, sampler="euler_ancestral")
    rows, ceiling = {}, None
    for s_tmin in args.s_tmin:
        backend.options["s_tmin"] = s_tmin
        t0 = time.perf_counter()
        result = evaluate(backend, given="prompt,mask", n=args.n, size=args.size, seeds_per_condition=1,
                          parser=parser, classifier=classifier, progress=not args.quiet)
        per_attribute = result.metrics["details"]["run"]["per_attribute"]
        name = f"s_tmin {s_tmin:g}" + (" (default)" if s_tmin == 0 else " (= ddim, eta 0)" if s_tmin > 80 else "")
        rows[name] = {**{k: result.metrics[k] for k in COLUMNS}, **{a: per_attribute.get(a) for a in FINE_ATTRIBUTES}}
        ceiling = {**result.metrics["ceiling"],
                   **{a: result.metrics["details"]["ceiling"]["per_attribute"].get(a) for a in FINE_ATTRIBUTES}}
        print(f"{name}: {rows[name]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows, ceiling


def _s_tmin_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give noise levels separated by commas, e.g. 0,0.3,1,3,1000") from None
    if not values or any(not v >= 0 for v in values):             # also NaN
        raise argparse.ArgumentTypeError(f"{text!r}: noise levels are numbers >= 0")
    return values


def ablate_training(args) -> tuple[dict, dict]:
    from faceweave import checkpoint
    from faceweave.backends.diffusion import DiffusionBackend
    from faceweave.eval.evaluate import evaluate
    from faceweave.train import TASKS, export, resolve_config, train

    preset = args.preset
    arch = dataclasses.asdict(TASKS["diffusion"].architectures[resolve_config("diffusion", preset)["arch"]])
    size = args.size                                    # the ruler's sizes: 64 or 128
    parser = classifier = None
    rows, ceiling = {}, None
    variants = {k: v for k, v in TRAIN_VARIANTS.items() if not args.only or k.split(" (")[0] in args.only}
    # scores of another protocol (e.g. before prompts' attributes were read) are redone; keys
    # kept before the sampler was part of them were scored with dpmpp_2m
    key = {"steps": args.steps, "n": args.n, "steps_sample": args.steps_sample, "prompt_attributes": True,
           "sampler": args.sampler}
    kept = json.loads(args.kept.read_text()) if args.kept and args.kept.exists() else {}
    for name, change in variants.items():
        entry = kept.get(name, {})
        run = args.out / name.split(" (")[0].replace(" ", "_").replace(",", "")
        if entry.get("key") == {**key, "preset": preset, "size": size}:
            rows[name], ceiling = entry["row"], entry["ceiling"]
            val = {} if VALIDATION[0] in rows[name] else _validation(run)   # kept before losses were recorded
            if val:
                rows[name] = entry["row"] = {**rows[name], **val}
                _write_kept(args.kept, kept)
            print(f"{name}: {rows[name]} (kept in {args.kept})", flush=True)
            continue
        model_change = {k: v for k, v in change.items() if k in arch}
        overrides = {"max_steps": args.steps, "size": size, **{k: v for k, v in change.items() if k not in arch}}
        if model_change or arch.get("size") != size:
            overrides["model"] = {**arch, "size": size, **model_change}
        done = checkpoint.read_config(run / "last").get("step", 0) if (run / "last").exists() else None
        if done is None and run.exists():
            shutil.rmtree(run)                          # killed before its first checkpoint: start over
        if done is None or done < args.steps:
            result = train("diffusion", preset, "facesynth:" + str(size), run, resume=done is not None,
                           overrides=overrides, progress=not args.quiet)
            if result.get("stopped_by"):
                raise SystemExit(f"{name}: stopped at step {result['step']} ({result['stopped_by']}); "
                                 "run the same command again to go on")
        elif done > args.steps:
            raise SystemExit(f"{run} is already trained to {done} steps, more than --steps {args.steps}; "
                             f"give --steps {done} or another --out")
        scores = run / "scores.json"
        stored = json.loads(scores.read_text()) if scores.exists() else {}
        if {"sampler": "dpmpp_2m", **stored.get("key", {})} == key:
            rows[name], ceiling = {**stored["row"], **_validation(run)}, stored["ceiling"]
        else:
            if parser is None:
                parser, classifier = _instruments(size)
            shipped = export(run, run / "export", dtype=None)
            result = evaluate(DiffusionBackend(str(shipped), steps=args.steps_sample, prompt_attributes=True,
                                               sampler=args.sampler),
                              given="prompt,mask",
                              n=args.n, size=size, parser=parser, classifier=classifier, progress=not args.quiet)
            rows[name] = {**{k: result.metrics[k] for k in COLUMNS}, **_validation(run)}
            ceiling = {k: result.metrics["ceiling"].get(k) for k in COLUMNS}
            tmp = scores.with_name("scores.json.tmp")
            tmp.write_text(json.dumps({"key": key, "row": rows[name], "ceiling": ceiling}, indent=1))
            tmp.replace(scores)
        if args.kept:
            kept[name] = {"key": {**key, "preset": preset, "size": size}, "row": rows[name], "ceiling": ceiling,
                          "run": str(run)}
            _write_kept(args.kept, kept)
        print(f"{name}: {rows[name]}", flush=True)
    return rows, ceiling


WEIGHT_BANDS = (0.0, 0.1, 0.2236, 0.5, 2.0, 10.0, float("inf"))   # 0.2236: where min_snr's cap starts


def weight_shares(p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = 0.5,
                  bands: tuple[float, ...] = WEIGHT_BANDS, points: int = 20001) -> dict[str, list[float]]:
    """Each weighting's share of the training signal per sigma band (shares sum to 1).

    The signal at a noise level is the weighting's lambda over EDM's lambda (EDM's
    preconditioning gives the network a unit-variance target at every level; a first-order
    picture that leaves out how the trained error differs by level), times the density of that
    level under the training distribution; integrated over ln sigma on a grid of +-8 standard
    deviations. "edm" is thus the probability of each band."""
    import torch

    from faceweave.diffusion.losses import WEIGHTINGS, loss_weight

    z = torch.linspace(-8.0, 8.0, points, dtype=torch.float64)
    sigma = (p_mean + p_std * z).exp()
    density = torch.exp(-0.5 * z ** 2)
    edm = loss_weight("edm", sigma, sigma_data)
    shares = {}
    for kind in WEIGHTINGS:
        signal = density * loss_weight(kind, sigma, sigma_data) / edm
        total = signal.sum()
        shares[kind] = [float(signal[(sigma >= lo) & (sigma < hi)].sum() / total) for lo, hi in pairwise(bands)]
    return shares


def _weights_table(shares: dict[str, list[float]], bands: tuple[float, ...] = WEIGHT_BANDS) -> str:
    names = [f"{lo:g}-{hi:g}" if hi != float("inf") else f">= {lo:g}" for lo, hi in pairwise(bands)]
    names[0] = f"< {bands[1]:g}"
    lines = ["| weighting | " + " | ".join(f"sigma {n}" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    lines += [f"| {kind} | " + " | ".join(f"{100 * v:.1f} %" for v in row) + " |" for kind, row in shares.items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["guidance", "train", "weights", "noise"])
    ap.add_argument("--model", default="diffusion-64", help="guidance, noise: checkpoint folder or bundled name")
    ap.add_argument("--n", type=int, default=200, help="held-out conditions per setting")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None,
                    help="guidance: sampling steps (default 20); train: training steps per variant (default 1500)")
    ap.add_argument("--steps-sample", type=int, default=20, help="train: sampling steps when evaluating")
    ap.add_argument("--sampler", default="dpmpp_2m",
                    help="the sampler every setting is scored with (train: the one its kept scores used); "
                         "noise always uses euler_ancestral")
    ap.add_argument("--out", type=Path, default=None, help="guidance, train: where runs and ablation.json go")
    ap.add_argument("--preset", default="s64", help="train: the diffusion preset every variant starts from; weights: whose noise levels")
    ap.add_argument("--only", action="append", default=[], choices=[k.split(" (")[0] for k in TRAIN_VARIANTS],
                    help="train: this variant only (repeatable; default: all)")
    ap.add_argument("--kept", type=Path, default=None, metavar="FILE",
                    help="train: also keep each variant's scores here (commit it); variants found there under "
                         "the same protocol are skipped")
    ap.add_argument("--s-tmin", type=_s_tmin_list, default=[0.0, 0.3, 1.0, 3.0, 1000.0], metavar="LIST",
                    help="noise: the s_tmin values to compare, comma-separated (default 0,0.3,1,3,1000)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.what == "weights":
        from faceweave.errors import FaceweaveError
        from faceweave.train import TASKS, resolve_config
        try:
            recipe = resolve_config("diffusion", args.preset)
        except FaceweaveError as e:
            ap.error(str(e))
        sigma_data = TASKS["diffusion"].architectures[recipe["arch"]].sigma_data
        print(_weights_table(weight_shares(recipe["p_mean"], recipe["p_std"], sigma_data)))
        return
    if args.out is None:
        ap.error(f"{args.what} needs --out DIR (where its runs and ablation.json go)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "noise":
        args.sampler = "euler_ancestral"                 # what ablate_noise samples with, for ablation.json
    if args.what in ("guidance", "noise"):
        args.steps = args.steps or 20
        rows, ceiling = (ablate_guidance if args.what == "guidance" else ablate_noise)(args)
    else:
        args.steps = args.steps or 1500
        rows, ceiling = ablate_training(args)
    table = _table(rows, ceiling)
    print(table)
    tmp = args.out / "ablation.json.tmp"
    tmp.write_text(json.dumps({"what": args.what, "n": args.n, "steps": args.steps, "sampler": args.sampler,
                               "rows": rows,
                               "ceiling": {k: ceiling.get(k) for k in COLUMNS + FINE_ATTRIBUTES if k in ceiling}
                               if ceiling else None,
                               "table": table}, indent=1))
    tmp.replace(args.out / "ablation.json")


if __name__ == "__main__":
    main()
