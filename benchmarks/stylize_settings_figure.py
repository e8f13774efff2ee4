"""docs/stylize_settings.png: one photo towards every reference under three one-shot losses.

    python benchmarks/stylize_settings_figure.py --model stylize-64-real --photos runs/tune-photos \
        --out docs/stylize_settings.png

Rows: the references of benchmarks/stylize_eval.py made from the photos after the first
(as its --photos folder gives them). Columns: the reference, then the first photo's one-shot
stylization with the model's own settings (the FaceSynth parser's levels), with
`style_features=critic`, with `style_features=random` (four random filter banks), and with
stylize_eval.py's --judge-loss (the measure's own statistics as the loss: a bound, not a
stylizer). Printed: each one's style ratio and its mean absolute pixel difference (of 255)
to the defaults' result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import stylize_eval as ev  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="stylize-64-real")
    ap.add_argument("--photos", default=None, help="a folder of .jpg photos [default: stylize_eval.py's]")
    ap.add_argument("--cell", type=int, default=96)
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "stylize_settings.png"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    import faceweave
    from faceweave.backends.stylize.pipeline import square
    from faceweave.data.sheet import image_grid
    from faceweave.io import read_photo, resize_image, write_png

    files = sorted(Path(args.photos or ev.PHOTOS).glob("*.jpg"))
    refs = ev.references([], files)
    pipe = faceweave.load(args.model)
    ruler = ev.ParserFeatures()
    photo = read_photo(files[0])
    own = dict(pipe.meta.get("sampling") or {})
    settings = {"defaults": own, "critic": {**own, "style_features": "critic", "style_blocks": 2},
                "random": {**own, "style_features": "random", "style_blocks": 4}}
    results: dict[str, list] = {name: [] for name in [*settings, "judge-loss"]}
    for name, sampling in settings.items():
        pipe.meta["sampling"] = sampling
        results[name] = [pipe(photo, style=ref, name=files[0].stem) for _, ref, _ in refs]
    pipe.meta["sampling"] = own
    ev.judge_as_loss(ruler)
    results["judge-loss"] = [pipe(photo, style=ref, name=files[0].stem) for _, ref, _ in refs]

    cells, report = [], {}
    for k, (ref_name, ref, _) in enumerate(refs):
        ref_stat = ruler.statistics(square(ref, pipe.size))
        own_distance = ev.style_distance(ruler.statistics(results["defaults"][k].aligned), ref_stat)
        cells.append(resize_image(square(ref, pipe.size), args.cell))
        for name, outs in results.items():
            out = outs[k].stylized
            ratio = ev.style_distance(ruler.statistics(out), ref_stat) / own_distance
            diff = float(np.abs(out.astype(float) - results["defaults"][k].stylized).mean())
            report.setdefault(name, []).append((ratio, diff))
            cells.append(resize_image(out, args.cell))
            print(f"{ref_name}: {name} style ratio {ratio:.2f}, differs from the defaults' by {diff:.1f} of 255")
    out = Path(args.out)
    write_png(out, image_grid(cells, columns=1 + len(results)))
    summary = {name: {"style_ratio_mean": float(np.mean([r for r, _ in rows])),
                      "pixel_difference_to_defaults": float(np.mean([d for _, d in rows]))}
               for name, rows in report.items()}
    for name, s in summary.items():
        print(f"{name}: style ratio {s['style_ratio_mean']:.3f}, mean |difference| to the defaults' "
              f"{s['pixel_difference_to_defaults']:.1f} of 255")
    print(f"wrote {out}: reference | {' | '.join(results)}")
    return summary


if __name__ == "__main__":
    main()
