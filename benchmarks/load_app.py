"""Load test of the web app: a burst of concurrent requests, memory, and first-image latency.

    python benchmarks/load_app.py                                  # 20 requests, 20 steps (~1 min, 2-core CPU)
    python benchmarks/load_app.py --requests 50 --max-queue 8 --max-concurrency 2 --steps 10

1. Starts `faceweave app` (bundled diffusion-64) on 127.0.0.1 at a free port, as its own
   process, and waits until the page answers.
2. First image: three requests one after another (prompt + examples/mask_woman.png, one
   image, --steps steps), each timed from submit to the first output the server streams
   (the gallery with the face) through gradio_client; the median is printed next to
   - the same request through the pipeline in this process (`faceweave generate`'s call,
     model already loaded, same threads), median of three, and
   - one `faceweave generate` process for that request (start-up and model load included).
3. Burst: --requests clients, each with its own gradio_client.Client made beforehand, fire
   the same request at the same moment (a barrier). Each ends answered (images came back),
   cleanly refused (the server said its queue is full) or with an error (anything else).
   Latency min / median / max of the answered ones and of the refusals.
4. Memory: the server's resident set (VmRSS from /proc) before the burst and its maximum
   sampled every 50 ms during it, and the kernel's peak (VmHWM) over the server's life.

Only loopback traffic; every loop is bounded (the burst by --requests, waits by --timeout).
CPU timings depend on what else runs: say what did when quoting the figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MASK = ROOT / "examples" / "mask_woman.png"
PROMPT = "a smiling woman with blond hair"


def proc_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def wait_until_up(url: str, server: subprocess.Popen, timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server.poll() is not None:
            sys.exit(f"the app exited with status {server.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the app did not answer at {url} within {timeout:.0f} s")


def request_args(steps: int):
    from gradio_client import handle_file

    from faceweave.conditions import CELEBA_ATTRIBUTES

    editor = {"background": handle_file(str(MASK)), "layers": [], "composite": handle_file(str(MASK))}
    return [PROMPT, editor, None, "diffusion", steps, 2.0, None, None, None, None, 0, 1,
            *(["don't care"] * len(CELEBA_ATTRIBUTES))]


def time_to_first_output(client, args, timeout: float) -> tuple[float, float]:
    """(seconds to the first streamed output, seconds to the end) of one request."""
    start = time.perf_counter()
    job = client.submit(*args, api_name="/generate")
    first = None
    while not job.done() and time.perf_counter() - start < timeout:
        if first is None and job.outputs():
            first = time.perf_counter() - start
        time.sleep(0.005)
    job.result(timeout=timeout)
    total = time.perf_counter() - start
    return (first if first is not None else total), total


def pipeline_seconds(steps: int, threads: int, repeats: int = 3) -> float:
    import torch

    import faceweave
    from faceweave import io

    torch.set_num_threads(threads)
    pipe = faceweave.load("diffusion")
    mask = io.read_mask(MASK)
    pipe(prompt=PROMPT, mask=mask, seeds=[0], num_inference_steps=2, progress=False)      # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pipe(prompt=PROMPT, mask=mask, seeds=[0], num_inference_steps=steps, guidance_scale=2.0, progress=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cli_process_seconds(steps: int, env: dict) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "faceweave.cli", "generate", "--prompt", PROMPT, "--mask", str(MASK),
                        "--seeds", "0", "--steps", str(steps), "--out", out, "--overwrite", "--quiet"],
                       env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def burst(url: str, args, n: int, timeout: float) -> list[tuple[str, float, str]]:
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def one(i: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            clients[i].predict(*args, api_name="/generate")
            results[i] = ("answered", time.perf_counter() - start, "")
        except Exception as exc:  # noqa: BLE001 - classified, not hidden
            text = str(exc)
            kind = "refused" if "queue is full" in text.lower() else "error"
            results[i] = (kind, time.perf_counter() - start, f"{type(exc).__name__}: {text[:120]}")

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return [r if r is not None else ("error", timeout, "no answer in time") for r in results]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"min {min(values):.2f} s, median {statistics.median(values):.2f} s, max {max(values):.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20, help="concurrent requests in the burst")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps per request (1 image each)")
    ap.add_argument("--max-concurrency", type=int, default=1, help="the app's --max-concurrency")
    ap.add_argument("--max-queue", type=int, default=16, help="the app's --max-queue")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, server and in-process pipeline alike")
    ap.add_argument("--timeout", type=float, default=600, help="seconds any one wait may take")
    opts = ap.parse_args()

    from faceweave.app import free_port

    env = {**os.environ, "OMP_NUM_THREADS": str(opts.threads), "GRADIO_ANALYTICS_ENABLED": "False"}
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([sys.executable, "-m", "faceweave.cli", "app", "--port", str(port),
                               "--max-concurrency", str(opts.max_concurrency), "--max-queue", str(opts.max_queue)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        startup = wait_until_up(url, server, opts.timeout)
        from gradio_client import Client

        args = request_args(opts.steps)
        client = Client(url, verbose=False)
        client.predict(*request_args(2), api_name="/generate")                 # warm-up request
        firsts, totals = zip(*(time_to_first_output(client, args, opts.timeout) for _ in range(3)))
        rss_before = proc_kib(server.pid, "VmRSS")

        peak = [rss_before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc_kib(server.pid, "VmRSS"))
                time.sleep(0.05)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        outcomes = burst(url, args, opts.requests, opts.timeout)
        burst_s = time.perf_counter() - started
        stop.set()
        sampler.join()
        hwm = proc_kib(server.pid, "VmHWM")
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    pipe_s = pipeline_seconds(opts.steps, opts.threads)
    cli_s = cli_process_seconds(opts.steps, env)

    kinds = [o[0] for o in outcomes]
    print(f"faceweave app load test: {opts.requests} concurrent requests, 1 image x {opts.steps} steps each "
          f"(prompt + mask), --max-concurrency {opts.max_concurrency} --max-queue {opts.max_queue}, "
          f"{opts.threads} torch thread(s), {os.cpu_count()} CPUs")
    print(f"server start-up (process start to page answering): {startup:.1f} s")
    print(f"answered {kinds.count('answered')} / cleanly refused {kinds.count('refused')} / "
          f"errors {kinds.count('error')}   (burst took {burst_s:.1f} s)")
    print(f"latency answered: {spread([o[1] for o in outcomes if o[0] == 'answered'])}")
    print(f"latency refused:  {spread([o[1] for o in outcomes if o[0] == 'refused'])}")
    for kind, _, detail in outcomes:
        if kind == "error":
            print(f"  error: {detail}")
    print(f"server RSS: {rss_before / 1024:.0f} MiB before the burst, {peak[0] / 1024:.0f} MiB max during it, "
          f"peak over its life (VmHWM) {hwm / 1024:.0f} MiB")
    print(f"first image in the app, one request alone (median of 3): {statistics.median(firsts):.2f} s to the "
          f"first streamed output, {statistics.median(totals):.2f} s to the end of the request")
    print(f"same request through the pipeline in-process (faceweave generate's call, model loaded, median of 3): "
          f"{pipe_s:.2f} s   -> app overhead {statistics.median(firsts) - pipe_s:+.2f} s (target <= +1 s)")
    print(f"one `faceweave generate` process for it (start-up and model load included): {cli_s:.1f} s")


if __name__ == "__main__":
    main()
