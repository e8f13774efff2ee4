"""Seeds: the one number that makes a generated image reproducible (image i depends only on
seed i). Every command, the Python API and the web app check seeds here, so they accept the
same seeds and refuse the others in the same words.

A seed is a whole number from 0 to MAX_SEED = 2**63 - 1. torch.Generator.manual_seed takes
64-bit values (up to 2**64 - 1; a larger one is "Overflow when unpacking long long"), and
the backends seed further generators at small offsets from an image's seed (the sampler's
fresh noise at seed + 1, collab's editing noise at seed + 7919), which stay below 2**64 from
any seed up to 2**63 - 1. 2**63 - 1 is also the largest int64, what numpy and most JSON
readers hold exactly.

Not covered: `faceweave data synth --seed` numbers a FaceSynth stream (0..999,999 per split,
data.unified.facesynth_seed) and a training run's `seed` setting seeds numpy's global
generator (0..2**32 - 1, train.loop); neither is an image seed.
"""
from __future__ import annotations

import numpy as np

from .errors import FaceweaveError

MAX_SEED = 2**63 - 1
MAX_SEEDS_PER_LIST = 10_000     # images one `--seeds` list may ask for
_RANGE = f"seeds are non-negative integers up to 2**63 - 1 = {MAX_SEED}"


def check_seed(seed, name: str = "seed") -> int:
    """One seed as an int; a bool, a fraction, a string or a number out of range is an error."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise FaceweaveError(f"{name} must be an integer, got {seed!r}; {_RANGE}")
    if not 0 <= seed <= MAX_SEED:
        raise FaceweaveError(f"{name} {seed} is out of range: {_RANGE}")
    return int(seed)


def check_seeds(seeds) -> list[int]:
    """A pipeline's seeds: a non-empty list of whole numbers in range (numpy integers too). A
    string or a fraction is an error, not a silent int() of its pieces."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise FaceweaveError(f"seeds must be a list of non-negative integers, e.g. [0, 1, 2], got {seeds!r}")
    out = []
    for seed in seeds:
        try:
            out.append(check_seed(seed))
        except FaceweaveError:
            raise FaceweaveError(f"{_RANGE}, got {seed!r} among the seeds") from None
    if not out:
        raise FaceweaveError("seeds must be a non-empty list of non-negative integers, got an empty list")
    return out


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """Seeds written on a command line: '0-3' -> [0, 1, 2, 3]; '0,5,7'; ranges and lists mix
    ('0-2,10'). Each seed names an output file, so a seed listed twice is an error."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                if hi - lo + 1 + len(seeds) > MAX_SEEDS_PER_LIST:   # before the list is made, not after
                    raise FaceweaveError(f"{flag} {text!r} asks for {hi - lo + 1 + len(seeds):,} images; "
                                         f"at most {MAX_SEEDS_PER_LIST} per call")
                seeds.extend(range(lo, hi + 1))
            elif part:
                seeds.append(int(part))
    except FaceweaveError:
        raise
    except ValueError:
        raise FaceweaveError(f"{flag} {text!r} is not a seed list; write e.g. 0-3 or 0,5,7") from None
    if not seeds:
        raise FaceweaveError(f"{flag} {text!r} names no seed; write e.g. 0-3 or 0,5,7")
    if len(seeds) > MAX_SEEDS_PER_LIST:
        raise FaceweaveError(f"{flag} {text!r} asks for {len(seeds):,} images; at most {MAX_SEEDS_PER_LIST} per call")
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise FaceweaveError(f"{flag} {text!r}: seed {seed} is out of range; {_RANGE}")
    if len(set(seeds)) < len(seeds):
        repeated = next(s for i, s in enumerate(seeds) if s in seeds[:i])
        raise FaceweaveError(f"{flag} {text!r} lists seed {repeated} more than once; each seed gives one "
                             "image file, so list it once")
    return seeds
