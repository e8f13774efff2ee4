"""Diffusion pipeline speed at 64 px: seconds per image, sampler-loop overhead, peak memory.

    python benchmarks/bench_diffusion.py                       # full run (~2-3 min on an idle 2-core CPU)
    python benchmarks/bench_diffusion.py --quick               # ~1 min: batches 1 and 8, one timed run each
    python benchmarks/bench_diffusion.py --threads 1 --json runs/bench/diffusion.json
    python benchmarks/bench_diffusion.py --model runs/diffusion64/best --device cuda --batches 1,16,64
    python benchmarks/bench_diffusion.py --quick --precision bf16  # the denoiser under bf16 autocast

For every guidance scale (default 2.0 and 1.0) and batch size (default 1,2,4,8,16) it times
one pipeline call generating `batch` images in one batch (default: 20 steps, the pipeline's
default sampler, karras), after a short warm-up call, repeated up to --repeats times (or until --budget
seconds are spent on that setting) and reports the median:

  sec/img     wall time of the pipeline call / images (everything the user waits for)
  cpu/img     CPU time of this process during the call / images (all threads). On a virtual
              machine whose cores are partly taken by the host ("steal" in vmstat), wall time
              swings from run to run while CPU time does not: compare settings by this column there.
  text s      time inside the MiniLM text encoder during the call (prompts are cached per
              string, so after the warm-up this is a lookup; the cold cost is printed once
              separately). Not counted as sampler overhead.
  net s       summed wall time inside ConditionalDenoiser.forward (forward hooks; on CUDA
              synchronised before and after each forward)
  cond %      share of the network time spent in the Conditioner, which does not depend on
              x or sigma (the same work every step: could be computed once per call)
  ovh %       sampler-loop overhead = (total - text - net) / net; target <= 5 %
  peak MiB    CUDA: torch.cuda.max_memory_allocated during the call (and its increase over
              what was allocated before). CPU: the process's peak RSS during the call (VmHWM,
              reset per call through /proc/self/clear_refs where allowed; otherwise
              ru_maxrss, which never goes down) minus the RSS before it.

Guidance 2.0 evaluates the conditional and the unconditional model in one network batch of
2 x batch images, so it costs about twice guidance 1.0 per image.

--model takes a checkpoint folder or a bundled model name (default diffusion-64). If there
is none, a randomly initialised model of the s64 architecture is timed instead (the output
says so): speed and memory do not depend on the weights.

CPU timings are very sensitive to other processes: with another job using the cores, the
default thread count oversubscribes them and timings can be several times worse (and
erratic); use --threads 1 on a shared machine, and compare numbers only from like runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from faceweave import checkpoint
from faceweave.backends.diffusion import DiffusionPipeline
from faceweave.conditions import Conditions
from faceweave.errors import FaceweaveError
from faceweave.models.denoiser import ConditionalDenoiser
from faceweave.synth import render
from faceweave.train.tasks import TASKS

MiB = 1024 * 1024


# -- memory -------------------------------------------------------------------------------
def _rss_bytes() -> int | None:
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _hwm_bytes() -> int | None:
    """Peak RSS of this process (VmHWM), or None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024      # bytes on macOS, KiB on Linux


class PeakMemory:
    """Peak memory of one call: `with PeakMemory(device) as m: ...; m.peak, m.increase` (bytes)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = ""
        self.peak = self.increase = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
        else:
            self.base = _rss_bytes()
            if _reset_hwm() and _hwm_bytes() is not None:
                self.method = "peak RSS (VmHWM, reset per call)"
            else:
                self.method = "peak RSS (ru_maxrss, monotonic: a call's increase shows only above earlier peaks)"
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak = _hwm_bytes() if self.method.startswith("peak RSS (VmHWM") else _ru_maxrss_bytes()
        if self.peak is not None and self.base is not None:
            self.increase = max(self.peak - self.base, 0)
        return False


# -- timing hooks -------------------------------------------------------------------------
class ForwardTimer:
    """Summed wall time inside a module's forward calls (synchronising CUDA around each)."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.device, self.total, self.calls, self._t0 = device, 0.0, 0, None
        self._handles = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, module, args):
        self._sync()
        self._t0 = time.perf_counter()

    def _post(self, module, args, output):
        self._sync()
        self.total += time.perf_counter() - self._t0
        self.calls += 1

    def reset(self):
        self.total, self.calls = 0.0, 0

    def remove(self):
        for h in self._handles:
            h.remove()


class CallTimer:
    """Wraps a bound method on an object (the text encoder's encode) and sums its wall time."""

    def __init__(self, obj, name: str, device: torch.device):
        self.obj, self.name, self.device, self.total = obj, name, device, 0.0
        self.original = getattr(obj, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = self.original(*args, **kwargs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.total += time.perf_counter() - t0
            return out
        setattr(obj, name, timed)

    def reset(self):
        self.total = 0.0

    def remove(self):
        setattr(self.obj, self.name, self.original)


# -- the benchmark ------------------------------------------------------------------------
def load_pipeline(name: str, device: torch.device, dtype: torch.dtype,
                  precision: str = "fp32") -> tuple[DiffusionPipeline, str]:
    try:
        path = checkpoint.resolve(name)
    except FaceweaveError:
        config = TASKS["diffusion"].architectures["s64"]
        torch.manual_seed(0)
        model = ConditionalDenoiser(config).to(dtype)
        return (DiffusionPipeline(model, device=device, precision=precision),
                f"RANDOMLY INITIALISED s64 denoiser (no checkpoint {name!r}; timing does not depend on the weights)")
    pipe = DiffusionPipeline.from_pretrained(path, device=device, dtype=dtype, precision=precision)
    return pipe, f"checkpoint {path}"


def conditions_for(n: int, size: int, seed: int) -> list[Conditions]:
    """One FaceSynth sample per image: its first caption as the prompt and its label map."""
    out = []
    for i in range(n):
        sample = render(seed, i, size, captions=1)
        out.append(Conditions(prompt=sample.captions[0], mask=sample.mask))
    return out


def _fmt_mib(b) -> str:
    return "-" if b is None else f"{b / MiB:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="diffusion-64",
                    help="checkpoint folder or bundled model name (default diffusion-64; random s64 if absent)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="the pipeline's precision: bf16 = the denoiser under bfloat16 autocast (default fp32)")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    ap.add_argument("--sampler", default=None, help="default: the pipeline's (euler_ancestral)")
    ap.add_argument("--guidance", default="2.0,1.0", help="comma-separated guidance scales (default 2.0,1.0)")
    ap.add_argument("--batches", default="1,2,4,8,16", help="comma-separated batch sizes (default 1,2,4,8,16)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per setting at most; the median is reported")
    ap.add_argument("--budget", type=float, default=8.0,
                    help="stop repeating a setting once its timed calls took this many seconds (default 8)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0, help="FaceSynth stream for the conditions")
    ap.add_argument("--quick", action="store_true",
                    help="about a minute: batches 1,8 and one timed call per setting (unless given explicitly)")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures as JSON here")
    args = ap.parse_args()
    if args.sampler is None:
        from faceweave.backends.diffusion import DEFAULT_SAMPLER
        args.sampler = DEFAULT_SAMPLER
    explicit = set(a.split("=")[0] for a in sys.argv[1:] if a.startswith("--"))
    if args.quick:
        if "--batches" not in explicit:
            args.batches = "1,8"
        if "--repeats" not in explicit:
            args.repeats = 1

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    dtype = getattr(torch, args.dtype)
    scales = [float(s) for s in args.guidance.split(",") if s.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if not scales or not batches or min(batches) < 1 or args.repeats < 1:
        ap.error("need at least one guidance scale, batch sizes >= 1 and --repeats >= 1")

    t_start = time.perf_counter()
    pipe, model_note = load_pipeline(args.model, device, dtype, args.precision)
    size = pipe.size
    n_params = sum(p.numel() for p in pipe.model.parameters())
    conds = conditions_for(max(batches), size, args.seed)
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
                  f"{torch.get_num_threads()} torch threads"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"model:   {model_note}; {n_params / 1e6:.2f} M parameters, {size} px, {args.dtype}, "
          f"precision {args.precision}")
    print(f"device:  {device} ({machine})" + (f"; load average {load:.2f}" if load is not None else ""))
    if device.type == "cpu" and load is not None and load > 0.5 * (os.cpu_count() or 1):
        print("warning: other processes are using the CPU; timings will be slower and noisier than on an idle machine")
    print(f"setting: {args.steps} steps, {args.sampler}, karras; conditions = prompt + FaceSynth mask, "
          f"one sample per image; median of up to {args.repeats} timed calls (budget {args.budget:g} s)")

    # Warm-up: loads the text encoder, encodes the prompts (cached per string), first kernels.
    pipe(conditions=conds[:1], seeds=[0], num_inference_steps=2, guidance_scale=scales[0],
         sampler=args.sampler, progress=False)

    # The cold cost of the text encoder, per prompt (what a call pays for prompts it has not seen).
    encoder = pipe.text_encoder
    prompts = [c.prompt for c in conds]
    saved = dict(encoder._cache)
    encoder._cache.clear()
    t0 = time.perf_counter()
    encoder.encode(prompts)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    text_cold = (time.perf_counter() - t0) / len(prompts)
    encoder._cache.update(saved)
    print(f"text:    MiniLM encoding, cold: {1000 * text_cold:.1f} ms per prompt (once per new prompt; "
          f"cached afterwards)")

    net = ForwardTimer(pipe.model, device)
    cond_timer = ForwardTimer(pipe.model.conditioner, device)
    # If a future pipeline precomputes the conditioning once per call and calls the
    # preconditioned UNet directly, ConditionalDenoiser.forward is never entered: the network
    # time is then the UNet's (EDMPrecond) plus the conditioner's.
    unet_timer = ForwardTimer(pipe.model.denoiser, device)
    text = CallTimer(encoder, "encode", device)
    rows = []
    memory_method = None
    header = (f"{'guid':>5} {'batch':>5} {'runs':>4} {'sec/img':>8} {'cpu/img':>8} {'call s':>8} {'text s':>7} {'net s':>8} "
              f"{'fwd':>4} {'cond %':>6} {'ovh %':>6} {'peak MiB':>9} {'+MiB':>6}")
    print()
    print(header)
    print("-" * len(header))
    try:
        for scale in scales:
            for b in batches:
                kwargs = dict(conditions=conds[:b], seeds=list(range(b)), guidance_scale=scale,
                              sampler=args.sampler, batch_size=b, progress=False)
                pipe(num_inference_steps=2, **kwargs)               # warm-up at this batch size
                runs = []
                spent = 0.0
                while len(runs) < args.repeats and (not runs or spent < args.budget):
                    net.reset()
                    cond_timer.reset()
                    unet_timer.reset()
                    text.reset()
                    with PeakMemory(device) as mem:
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        t0, c0 = time.perf_counter(), time.process_time()
                        pipe(num_inference_steps=args.steps, **kwargs)
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        total, cpu = time.perf_counter() - t0, time.process_time() - c0
                    memory_method = mem.method
                    spent += total
                    network, forwards = net.total, net.calls
                    if forwards == 0:
                        network, forwards = unet_timer.total + cond_timer.total, unet_timer.calls
                    runs.append({"total": total, "cpu": cpu, "text": text.total, "net": network, "cond": cond_timer.total,
                                 "forwards": forwards, "peak": mem.peak, "increase": mem.increase})
                med = {k: statistics.median(r[k] for r in runs) for k in ("total", "cpu", "text", "net", "cond")}
                loop = med["total"] - med["text"] - med["net"]
                peaks = [r["peak"] for r in runs if r["peak"] is not None]
                incs = [r["increase"] for r in runs if r["increase"] is not None]
                row = {"guidance": scale, "batch": b, "runs": len(runs), "sec_per_image": med["total"] / b,
                       "cpu_sec_per_image": med["cpu"] / b,
                       "call_s": med["total"], "text_s": med["text"], "network_s": med["net"],
                       "loop_s": loop, "forwards": runs[0]["forwards"],
                       "conditioner_pct": 100 * med["cond"] / med["net"] if med["net"] else None,
                       "overhead_pct": 100 * loop / med["net"] if med["net"] else None,
                       "peak_bytes": max(peaks) if peaks else None,
                       "peak_increase_bytes": max(incs) if incs else None,
                       "all_calls_s": [r["total"] for r in runs]}
                rows.append(row)
                print(f"{scale:5.2g} {b:5d} {len(runs):4d} {row['sec_per_image']:8.3f} "
                      f"{row['cpu_sec_per_image']:8.3f} {med['total']:8.2f} "
                      f"{med['text']:7.3f} {med['net']:8.2f} {row['forwards']:4d} "
                      f"{row['conditioner_pct']:6.1f} {row['overhead_pct']:6.2f} "
                      f"{_fmt_mib(row['peak_bytes']):>9} {_fmt_mib(row['peak_increase_bytes']):>6}", flush=True)
    finally:
        net.remove()
        cond_timer.remove()
        unet_timer.remove()
        text.remove()

    print()
    best = {}
    for scale in scales:
        mine = [r for r in rows if r["guidance"] == scale]
        one = next((r for r in mine if r["batch"] == 1), None)
        top = min(mine, key=lambda r: r["sec_per_image"])
        worst_ovh = max(r["overhead_pct"] for r in mine)
        best[str(scale)] = {"batch": top["batch"], "sec_per_image": top["sec_per_image"],
                            "batch1_sec_per_image": one["sec_per_image"] if one else None,
                            "max_overhead_pct": worst_ovh}
        line = f"guidance {scale:g}: "
        if one:
            line += f"batch 1 {one['sec_per_image']:.3f} s/image; "
        line += (f"best batch {top['batch']} {top['sec_per_image']:.3f} s/image; "
                 f"sampler overhead max {worst_ovh:.2f} % ({'within' if worst_ovh <= 5 else 'ABOVE'} the 5 % target)")
        print(line)
    agreement = None
    if args.precision != "fp32":
        # the same images in fp32: how far the faster precision moves them
        import numpy as np
        b = max(batches)
        kwargs = {"conditions": conds[:b], "seeds": list(range(b)), "guidance_scale": scales[0],
                  "sampler": args.sampler, "batch_size": b, "progress": False, "num_inference_steps": args.steps}
        fast = np.stack(pipe(**kwargs).images).astype(np.int16)
        pipe.precision = "fp32"
        full = np.stack(pipe(**kwargs).images).astype(np.int16)
        pipe.precision = args.precision
        diff = np.abs(fast - full)
        spread = np.abs(full[1:] - full[:-1]).mean() if b > 1 else None
        agreement = {"images": b, "guidance": scales[0], "mean_abs_grey_levels": float(diff.mean()),
                     "p99_abs_grey_levels": float(np.percentile(diff, 99)), "max_abs_grey_levels": int(diff.max()),
                     "neighbouring_seeds_mean_abs": None if spread is None else float(spread)}
        print(f"{args.precision} vs fp32, the same {b} images (guidance {scales[0]:g}): mean |difference| "
              f"{agreement['mean_abs_grey_levels']:.2f} grey levels, 99th percentile "
              f"{agreement['p99_abs_grey_levels']:.0f}, max {agreement['max_abs_grey_levels']}"
              + ("" if spread is None else f" (two neighbouring seeds differ by {spread:.1f} on average)"))
    print(f"memory:  {memory_method}")
    print(f"(ovh % excludes text encoding; peak MiB = peak during the call, +MiB = its increase over before; "
          f"benchmark took {time.perf_counter() - t_start:.0f} s)")

    if args.json:
        report = {"model": model_note, "random_weights": model_note.startswith("RANDOMLY"),
                  "parameters": n_params, "size": size, "dtype": args.dtype, "precision": args.precision,
                  "device": str(device),
                  "machine": machine, "load_average": load, "torch": torch.__version__,
                  "settings": {"steps": args.steps, "sampler": args.sampler, "schedule": "karras",
                               "guidance": scales, "batches": batches, "repeats": args.repeats,
                               "budget_s": args.budget, "threads": torch.get_num_threads(), "quick": args.quick},
                  "text_encoding_cold_s_per_prompt": text_cold, "memory_method": memory_method,
                  "rows": rows, "best": best, "agreement_with_fp32": agreement}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
