"""benchmarks/attribute_contrast.py: the contrast term is the documented formula, touches only
images whose prompt names attributes, and c = 0 is the pipeline's own guidance."""
from __future__ import annotations

import numpy as np
import torch

import faceweave
import faceweave.text
from faceweave.synth import render

FAST = {"num_inference_steps": 3, "progress": False}


def test_negated_flips_known_values_only(benchmark_module):
    values = torch.tensor([[1.0, 0.0, -1.0, 1.0]])
    assert torch.equal(benchmark_module("attribute_contrast").negated(values), torch.tensor([[0.0, 1.0, -1.0, 0.0]]))


def test_contrast_term_is_the_formula_and_only_where_the_prompt_names_attributes(tiny_model, benchmark_module):
    contrast = benchmark_module("attribute_contrast").contrast_pipeline
    mask = render(seed=2_000_000, index=0, size=32).mask
    plain = faceweave.load(str(tiny_model), device="cpu")
    assert contrast(plain, 0.0, 2.0) is plain and type(plain).__name__ == "DiffusionPipeline"
    pipe = contrast(faceweave.load(str(tiny_model), device="cpu"), 3.0, 2.0)

    # one denoiser call against the formula, its negative branch spelled as explicit attributes
    prompt = "a smiling blond man with eyeglasses"
    given = frozenset({"prompt", "mask"})
    conds = pipe._conditions(None, prompt, None, mask, None, 1)
    tensors, _ = pipe.condition_tensors(conds)
    x, sigma = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)), 3.0
    with torch.no_grad():
        got = pipe.guided_denoiser(tensors, given, 2.0)(x, sigma, 0)
        cond, uncond = plain.evaluator(tensors)(x, sigma, [given, frozenset()])
        flipped = {name: 1 - value for name, value in faceweave.text.parse_prompt(prompt).items()}
        neg_conds = plain._conditions(None, prompt, flipped, mask, None, 1)
        neg_tensors, _ = plain.condition_tensors(neg_conds)
        neg = plain.evaluator(neg_tensors)(x, sigma, [given | {"attributes"}])[0]
    assert (cond - neg).abs().mean() > 1e-4                     # the flip reaches the network
    assert torch.allclose(got, uncond + 2.0 * (cond - uncond) + 3.0 * (cond - neg), atol=1e-5)

    # sampling: a prompt naming attributes changes, one naming none is the plain pipeline's image
    named = pipe(prompt=prompt, mask=mask, seeds=[0], **FAST).images[0]
    assert np.abs(named.astype(int) - plain(prompt=prompt, mask=mask, seeds=[0], **FAST).images[0]).mean() > 0.5
    assert np.array_equal(pipe(prompt="a face", mask=mask, seeds=[0], **FAST).images[0],
                          plain(prompt="a face", mask=mask, seeds=[0], **FAST).images[0])
