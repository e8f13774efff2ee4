"""How well the stylize backend keeps the face and takes the style, on real photos.

    python benchmarks/stylize_eval.py --model runs/stylize-enc-64-real/last \
        --text-model runs/stylize-text-64-real/last --n 8 --json runs/stylize-eval.json

Photos: the first --n of ../shared/data/real/photos (CelebA-HQ test photos, none of them in
celebamask-1k, which the models train on), aligned by the pipeline. References, unseen by
every model: the last four of those photos through four looks made at their full 256 px
(styles.py filters: watercolor, pencil sketch, cartoon in warm colours, oil painting in cool
blue tones), one FaceSynth cartoon face, and any --references files. Every photo is
stylized towards every reference (one-shot), then, with --text-model, by two texts.

Per stylized face (all at the model's side, against the aligned input face):
  identity   dlib's identity distance (faceweave.eval.faces; < 0.6: the same person)
  structure  mIoU of the real-face parser's masks (parser-real-128) of output and input
  style      the Gram distance to the reference on the parser's encoder features: per
             level, ||G(a) - G(ref)||_F / ||G(ref)||_F, averaged over the four levels
             (Gatys et al. 2016's texture statistics, on a network the stylizer never
             trained or read); reported as the ratio of the output's distance to the
             photo's own distance (< 1: closer to the reference than the photo was)
  seconds    the whole call; tune_seconds the one-shot fine-tuning alone
Zero-shot: the two texts' outputs differ by `text_pixel_distance` (mean |a - b| / 255) and
their Gram distance to each other; identity and structure as above.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "real" / "photos"
LOOKS = [("watercolor painting", ""), ("pencil sketch", ""), ("cartoon with dark outlines", " in warm colors"),
         ("oil painting", " in cool blue tones")]
TEXTS = ("a pencil sketch", "a watercolor painting in warm colors")


def references(extra: list[str], photos: list[Path]) -> list[tuple[str, np.ndarray]]:
    from faceweave.backends.stylize import styles
    from faceweave.io import read_image
    from faceweave.synth import render
    out = []
    for (name, colour), path in zip(LOOKS, photos[-len(LOOKS):]):
        rng = np.random.default_rng(7)
        image = read_image(path)
        styled = styles.COLOURS[colour](styles.FILTERS[name](image, rng), rng)
        out.append((f"{name}{colour} of {path.stem}", styled))
    out.append(("FaceSynth cartoon face", render(seed=4_000_000, index=3, size=256, captions=0).image))
    out += [(Path(p).name, read_image(p)) for p in extra]
    return out


class ParserFeatures:
    """The real-face parser, also giving the outputs of its encoder levels."""

    def __init__(self):
        from faceweave.ruler import load_parser
        self.parser = load_parser("parser-real-128", size=128)
        self._feats: list[torch.Tensor] = []
        for stage in self.parser.model.down:
            stage.register_forward_hook(lambda m, a, out: self._feats.append(out))

    def masks(self, images: np.ndarray) -> np.ndarray:
        return self.parser.predict(images)

    @torch.no_grad()
    def grams(self, image: np.ndarray) -> list[torch.Tensor]:
        self._feats = []
        self.parser.model(self.parser._tensor(image[None]))
        grams = []
        for f in self._feats:
            v = f.flatten(2)
            grams.append((v @ v.transpose(1, 2) / v.shape[2])[0])
        return grams


def gram_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(np.mean([float((x - y).norm() / y.norm().clamp(min=1e-8)) for x, y in zip(a, b)]))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="stylize checkpoint for one-shot")
    ap.add_argument("--text-model", default=None, help="stylize checkpoint with a text mapper (zero-shot)")
    ap.add_argument("--photos", default=str(PHOTOS))
    ap.add_argument("--n", type=int, default=8, help="photos to stylize")
    ap.add_argument("--references", nargs="*", default=[], help="further reference images")
    ap.add_argument("--tune-steps", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    import faceweave
    from faceweave.eval.faces import identity_distance, identity_embeddings
    from faceweave.eval.metrics import mask_scores
    from faceweave.io import read_photo

    files = sorted(Path(args.photos).glob("*.jpg"))
    if len(files) < args.n + len(LOOKS):
        sys.exit(f"{args.photos} holds {len(files)} photos; need {args.n + len(LOOKS)}")
    photos = [(p.stem, read_photo(p)) for p in files[: args.n]]
    refs = references(args.references, files)
    pipe = faceweave.load(args.model)
    ruler = ParserFeatures()
    side = pipe.size

    def scores(face: np.ndarray, outs: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
        emb = identity_embeddings(np.stack([face, *outs]))
        masks = ruler.masks(np.stack([face, *outs]))
        miou = [mask_scores(m[None], masks[:1])["miou"] for m in masks[1:]]
        return identity_distance(emb[1:], emb[0]), miou

    from faceweave.backends.stylize.pipeline import square
    ref_grams = [ruler.grams(square(r, side)) for _, r in refs]
    rows = []
    for stem, photo in photos:
        for (ref_name, ref), ref_gram in zip(refs, ref_grams):
            t0 = time.perf_counter()
            out = pipe(photo, style=ref, tune_steps=args.tune_steps, name=stem)
            seconds = time.perf_counter() - t0
            ident, miou = scores(out.aligned, [out.stylized])
            own = gram_distance(ruler.grams(out.aligned), ref_gram)
            got = gram_distance(ruler.grams(out.stylized), ref_gram)
            rows.append({"photo": stem, "reference": ref_name, "identity": float(ident[0]), "miou": miou[0],
                         "style_distance": got, "photo_style_distance": own, "style_ratio": got / own,
                         "seconds": seconds, "tune_seconds": out.metadata[0]["tune_seconds"]})
            print(f"{stem} <- {ref_name}: identity {ident[0]:.3f}, mIoU {miou[0]:.3f}, style {got:.3f} "
                  f"(photo {own:.3f}, ratio {got / own:.2f}), {seconds:.1f} s", flush=True)
    mean = lambda key, rs=rows: float(np.mean([r[key] for r in rs]))        # noqa: E731
    result = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s)", "model": args.model,
              "photos": len(photos), "references": [n for n, _ in refs], "tune_steps": rows[0] and
              (args.tune_steps if args.tune_steps is not None else pipe.sampling["tune_steps"]),
              "one_shot": {"identity_mean": mean("identity"), "identity_below_0.6": float(np.mean([r["identity"] < 0.6
                                                                                                   for r in rows])),
                           "miou_mean": mean("miou"), "style_ratio_mean": mean("style_ratio"),
                           "style_ratio_median": float(np.median([r["style_ratio"] for r in rows])),
                           "style_ratio_at_most_0.7": float(np.mean([r["style_ratio"] <= 0.7 for r in rows])),
                           "sec_per_image": mean("seconds"), "tune_seconds": mean("tune_seconds"),
                           "per_reference": {n: {"identity": mean("identity", [r for r in rows if r["reference"] == n]),
                                                 "style_ratio": mean("style_ratio",
                                                                     [r for r in rows if r["reference"] == n])}
                                             for n, _ in refs}},
              "rows": rows}
    # the stage-1 reconstruction (strength 0): what the encoder-decoder alone keeps
    base = []
    for stem, photo in photos:
        out = pipe(photo, style=refs[0][1], strength=0.0, tune_steps=0, name=stem)
        ident, miou = scores(out.aligned, [out.stylized])
        base.append((float(ident[0]), miou[0]))
    result["reconstruction"] = {"identity_mean": float(np.mean([b[0] for b in base])),
                                "miou_mean": float(np.mean([b[1] for b in base]))}
    if args.text_model:
        tpipe = faceweave.load(args.text_model)
        trows = []
        for stem, photo in photos:
            t0 = time.perf_counter()
            a, b = (tpipe(photo, style_text=t, name=stem) for t in TEXTS)
            seconds = (time.perf_counter() - t0) / 2
            ident, miou = scores(a.aligned, [a.stylized, b.stylized])
            trows.append({"photo": stem, "identity": [float(i) for i in ident], "miou": miou,
                          "text_pixel_distance": float(np.abs(a.stylized.astype(float) - b.stylized).mean() / 255),
                          "text_gram_distance": gram_distance(ruler.grams(a.stylized), ruler.grams(b.stylized)),
                          "seconds": seconds})
        result["zero_shot"] = {"texts": list(TEXTS), "model": args.text_model,
                               "identity_mean": float(np.mean([r["identity"] for r in trows])),
                               "identity_below_0.6": float(np.mean([np.array(r["identity"]) < 0.6 for r in trows])),
                               "miou_mean": float(np.mean([r["miou"] for r in trows])),
                               "text_pixel_distance": mean("text_pixel_distance", trows),
                               "text_gram_distance": mean("text_gram_distance", trows),
                               "sec_per_image": mean("seconds", trows), "rows": trows}
    summary = {k: v for k, v in result.items() if k != "rows"}
    summary["one_shot"] = {k: v for k, v in result["one_shot"].items()}
    if "zero_shot" in summary:
        summary["zero_shot"] = {k: v for k, v in result["zero_shot"].items() if k != "rows"}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
