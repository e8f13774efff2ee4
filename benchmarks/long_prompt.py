"""What a long prompt costs, and how fast the app refuses one over the cap.

    python benchmarks/long_prompt.py                      # ~1 min on a 2-core CPU
    python benchmarks/long_prompt.py --no-server          # skip the served app (no gradio_client)

1. The prompt -> attributes parser (faceweave.text.parse_prompt) on the costliest text
   found for it, a run of modifiers ("very very very ..."), at lengths up to and past
   conditions.MAX_PROMPT_CHARS (the cap is lifted for this measurement only): best of 3
   per length. Its cost grows faster than the length, which is why prompts are capped.
2. The web app's answer to a 100,000-character prompt (ordinary words, one image, 20
   steps): through its generate handler in this process (faceweave.app.run_generate, the
   bundled model loaded first), and through the served app (a server on 127.0.0.1 at a
   free port, the page's /generate endpoint through gradio_client), each timed from the
   request to the error, median of 3. Before the cap the app spent minutes on such a prompt.

CPU timings depend on what else runs: say what did when quoting the figures.
"""
from __future__ import annotations

import argparse
import statistics
import time


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def parser_cost(lengths: list[int]) -> None:
    from faceweave import conditions
    from faceweave.text import parse_prompt

    saved, conditions.MAX_PROMPT_CHARS = conditions.MAX_PROMPT_CHARS, 10**9
    try:
        print(f"parse_prompt on 'very very ...' (the cap is {saved:,} characters)")
        for n in lengths:
            text = ("very " * (n // 5 + 1))[:n]
            print(f"  {n:>7,} characters  {min(_timed(lambda: parse_prompt(text)) for _ in range(3)):8.3f} s")
    finally:
        conditions.MAX_PROMPT_CHARS = saved


def _refused(call) -> str:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the refusal is what is measured
        return str(exc).splitlines()[0]
    raise SystemExit("the long prompt was not refused")


def app_answer(repeats: int, served: bool) -> None:
    from faceweave import app

    prompt = ("a smiling woman with blond hair and glasses " * 2500)[:100_000]
    models = app.Models()
    models.warm_up()
    times, message = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        message = _refused(lambda: app.run_generate(models, prompt, steps=20, n_images=1))
        times.append(time.perf_counter() - start)
    print(f"app handler (in process), 100,000 characters: median {statistics.median(times) * 1000:.1f} ms "
          f"of {repeats}: {message}")
    if not served:
        return
    import gradio_client
    from faceweave.conditions import CELEBA_ATTRIBUTES

    demo, url = app.launch(port=app.free_port(), models=models, block=False, quiet=True)
    try:
        client = gradio_client.Client(url, verbose=False)
        args = [prompt, None, None, "diffusion", 20, 2.0, None, None, None, None, 0, 1,
                *["don't care"] * len(CELEBA_ATTRIBUTES)]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            message = _refused(lambda: client.predict(*args, api_name="/generate"))
            times.append(time.perf_counter() - start)
        print(f"served app (/generate over loopback), 100,000 characters: median "
              f"{statistics.median(times) * 1000:.1f} ms of {repeats}: {message}")
    finally:
        demo.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="250,500,1000,2000,4000,8000",
                    help="prompt lengths for the parser, in characters")
    ap.add_argument("--repeats", type=int, default=3, help="app requests per way of asking")
    ap.add_argument("--no-server", dest="served", action="store_false", help="skip the served app")
    args = ap.parse_args()
    parser_cost([int(n) for n in args.lengths.split(",")])
    app_answer(args.repeats, args.served)


if __name__ == "__main__":
    main()
