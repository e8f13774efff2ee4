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
  style      the distance of feature statistics to the reference on the real-face parser's
             four encoder levels (a network the stylizer never trained or read): per level,
             (|mu(a) - mu(ref)| + |sigma(a) - sigma(ref)|) / (|mu(ref)| + |sigma(ref)|) over
             the channel means and standard deviations (the statistics AdaIN transfers,
             Huang & Belongie 2017), averaged over the levels; reported as the ratio of the
             output's distance to the photo's own (< 1: nearer the reference than the photo).
             Why these statistics and not Gram matrices: applying each reference's own
             filter to a photo ("oracle", reported per reference) must bring it nearest to
             that reference among the four looks; on 4 celebamask-1k photos this held for
             4 of 4 looks with channel statistics and 3 of 4 with Gram matrices (the Gram
             matrix is dominated by the mean activations, i.e. by content).
  joint      with --joint: the look in the stylizer's own image-text space (its image encoder,
             trained on styles.py's looks, reads no parser): cosine of output and of photo to
             the reference
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


def look(image: np.ndarray, name: str, colour: str) -> np.ndarray:
    """A styles.py look applied at the image's own side, with fixed parameters."""
    from faceweave.backends.stylize import styles
    rng = np.random.default_rng(7)
    return styles.COLOURS[colour](styles.FILTERS[name](image, rng), rng)


def references(extra: list[str], photos: list[Path]) -> list[tuple[str, np.ndarray, tuple | None]]:
    """(name, image, the look that made it or None) of every reference."""
    from faceweave.io import read_image
    from faceweave.synth import render
    out = [(f"{name}{colour} of {path.stem}", look(read_image(path), name, colour), (name, colour))
           for (name, colour), path in zip(LOOKS, photos[-len(LOOKS):])]
    out.append(("FaceSynth cartoon face", render(seed=4_000_000, index=3, size=256, captions=0).image, None))
    out += [(Path(p).name, read_image(p), None) for p in extra]
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
    def statistics(self, image: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per encoder level, the channel means and standard deviations of its features."""
        self._feats = []
        self.parser.model(self.parser._tensor(image[None]))
        return [(f[0].flatten(1).mean(1), f[0].flatten(1).std(1)) for f in self._feats]


def style_distance(a, b) -> float:
    """The style distance of a to b (module docstring), from their `ParserFeatures.statistics`."""
    return float(np.mean([float(((ma - mb).norm() + (sa - sb).norm()) / (mb.norm() + sb.norm()).clamp(min=1e-8))
                          for (ma, sa), (mb, sb) in zip(a, b)]))


def judge_as_loss(ruler: ParserFeatures) -> None:
    """--judge-loss: the one-shot's texture statistics become the measure's own (the parser's
    channel means and standard deviations per level, the output upsampled to its side as the
    measure resizes it) and its texture loss the measure's distance, the colour term kept. What
    the decoder's weights can do to this measure when the loss is the measure: a bound on its
    reach, which may fit the parser's statistics rather than draw the look."""
    import torch.nn.functional as F

    from faceweave.backends.stylize import pipeline as P
    model = ruler.parser.model.requires_grad_(False)
    side = ruler.parser.size

    def statistics(critic, images, blocks=2, kind="gram"):
        ruler._feats = []
        model(F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False))
        colours = images.permute(0, 2, 3, 1).reshape(-1, 3) @ P._DIRECTIONS.to(images).T
        return {"texture": [(f.flatten(2).mean(2).mean(0), f.flatten(2).std(2).mean(0)) for f in ruler._feats],
                "colours": colours.sort(0).values}

    def loss(stats, target, colour_weight=1.0):
        texture = [((ms - mt).norm() + (ss - st).norm()) / (mt.norm() + st.norm()).clamp(min=1e-8)
                   for (ms, ss), (mt, st) in zip(stats["texture"], target["texture"])]
        mine, theirs = stats["colours"], target["colours"]
        if theirs.shape[0] != mine.shape[0]:
            theirs = theirs[torch.linspace(0, theirs.shape[0] - 1, mine.shape[0]).round().long()]
        return sum(texture) / len(texture) + colour_weight * (mine - theirs).abs().mean()

    P.style_statistics, P.style_loss = statistics, loss


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="stylize checkpoint for one-shot")
    ap.add_argument("--text-model", default=None, help="stylize checkpoint with a text mapper (zero-shot)")
    ap.add_argument("--photos", default=str(PHOTOS))
    ap.add_argument("--n", type=int, default=8, help="photos to stylize")
    ap.add_argument("--references", nargs="*", default=[], help="further reference images")
    ap.add_argument("--tune-steps", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the model's sampling block (e.g. style_weight=5)")
    ap.add_argument("--joint", default=None,
                    help="a stylize_joint checkpoint (docs/stylize.md, Train): also score the look in its image "
                         "space, a second view that reads no parser: cosine of output and of photo to the reference")
    ap.add_argument("--judge-loss", action="store_true",
                    help="a bound, not a stylizer: the one-shot tunes towards this measure's own statistics "
                         "(the parser's levels) instead of the model's texture features")
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
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in pipe.sampling:
            sys.exit(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(pipe.sampling)}")
        overrides[key] = type(pipe.sampling[key])(value)
    pipe.meta["sampling"] = {**(pipe.meta.get("sampling") or {}), **overrides}
    ruler = ParserFeatures()
    joint = None
    if args.joint:
        from faceweave.backends.stylize.train import load_joint
        joint = load_joint(args.joint).eval()

    def joint_cosine(a: np.ndarray, b: np.ndarray) -> float:
        from faceweave.backends.stylize.train import to_tensor
        with torch.no_grad():
            e = joint(to_tensor([a, b], "cpu"))
        return float((e[0] * e[1]).sum())
    if args.judge_loss:
        judge_as_loss(ruler)
    side = pipe.size

    def scores(face: np.ndarray, outs: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
        emb = identity_embeddings(np.stack([face, *outs]))
        masks = ruler.masks(np.stack([face, *outs]))
        miou = [mask_scores(m[None], masks[:1])["miou"] for m in masks[1:]]
        return identity_distance(emb[1:], emb[0]), miou

    from faceweave.backends.stylize.pipeline import square
    ref_stats = [ruler.statistics(square(r, side)) for _, r, _ in refs]
    rows = []
    from faceweave.align import align_face
    from faceweave.backends.stylize.pipeline import ALIGN_SCALE, ALIGN_SHIFT
    from faceweave.io import resize_image
    for stem, photo in photos:
        # the oracle: the reference's own look applied to the photo's aligned face (at 256 px)
        big = align_face(photo, size=256, scale=ALIGN_SCALE, shift=ALIGN_SHIFT, name=stem).image
        for (ref_name, ref, made_by), ref_stat in zip(refs, ref_stats):
            t0 = time.perf_counter()
            out = pipe(photo, style=ref, tune_steps=args.tune_steps, name=stem)
            seconds = time.perf_counter() - t0
            ident, miou = scores(out.aligned, [out.stylized])
            own = style_distance(ruler.statistics(out.aligned), ref_stat)
            got = style_distance(ruler.statistics(out.stylized), ref_stat)
            oracle = None
            if made_by is not None:
                oracle = style_distance(ruler.statistics(resize_image(look(big, *made_by), side)), ref_stat) / own
            rows.append({"photo": stem, "reference": ref_name, "identity": float(ident[0]), "miou": miou[0],
                         "style_distance": got, "photo_style_distance": own, "style_ratio": got / own,
                         "oracle_style_ratio": oracle,
                         "seconds": seconds, "tune_seconds": out.metadata[0]["tune_seconds"]})
            if joint is not None:
                sq = square(ref, side)
                rows[-1].update(joint_cosine=joint_cosine(out.stylized, sq),
                                joint_cosine_photo=joint_cosine(out.aligned, sq))
            print(f"{stem} <- {ref_name}: identity {ident[0]:.3f}, mIoU {miou[0]:.3f}, style {got:.3f} "
                  f"(photo {own:.3f}, ratio {got / own:.2f}), {seconds:.1f} s", flush=True)
    mean = lambda key, rs=rows: float(np.mean([r[key] for r in rs]))        # noqa: E731
    result = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s)", "model": args.model,
              "sampling": pipe.sampling,
              "photos": len(photos), "references": [n for n, _, _ in refs], "tune_steps": rows[0] and
              (args.tune_steps if args.tune_steps is not None else pipe.sampling["tune_steps"]),
              "one_shot": {"identity_mean": mean("identity"), "identity_below_0.6": float(np.mean([r["identity"] < 0.6
                                                                                                   for r in rows])),
                           "miou_mean": mean("miou"), "style_ratio_mean": mean("style_ratio"),
                           "style_ratio_median": float(np.median([r["style_ratio"] for r in rows])),
                           "style_ratio_at_most_0.7": float(np.mean([r["style_ratio"] <= 0.7 for r in rows])),
                           "sec_per_image": mean("seconds"), "tune_seconds": mean("tune_seconds"),
                           "per_reference": {n: {"identity": mean("identity", [r for r in rows if r["reference"] == n]),
                                                 "style_ratio": mean("style_ratio",
                                                                     [r for r in rows if r["reference"] == n]),
                                                 "oracle_style_ratio": (None if m is None else mean(
                                                     "oracle_style_ratio", [r for r in rows if r["reference"] == n]))}
                                             for n, _, m in refs}},
              "rows": rows}
    if joint is not None:
        result["one_shot"].update(joint_cosine_mean=mean("joint_cosine"),
                                  joint_cosine_photo_mean=mean("joint_cosine_photo"),
                                  joint_nearer=float(np.mean([r["joint_cosine"] > r["joint_cosine_photo"]
                                                              for r in rows])))
        for n, _, _ in refs:
            result["one_shot"]["per_reference"][n]["joint_cosine"] = mean("joint_cosine",
                                                                         [r for r in rows if r["reference"] == n])
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
                          "text_style_distance": style_distance(ruler.statistics(a.stylized),
                                                                ruler.statistics(b.stylized)),
                          "seconds": seconds})
        result["zero_shot"] = {"texts": list(TEXTS), "model": args.text_model,
                               "identity_mean": float(np.mean([r["identity"] for r in trows])),
                               "identity_below_0.6": float(np.mean([np.array(r["identity"]) < 0.6 for r in trows])),
                               "miou_mean": float(np.mean([r["miou"] for r in trows])),
                               "text_pixel_distance": mean("text_pixel_distance", trows),
                               "text_style_distance": mean("text_style_distance", trows),
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
