"""Data sets: the unified folder format, FaceSynth on the fly, and converters from the
published layouts (CelebAMask-HQ, MM-CelebA-HQ, a folder of photos).

    from faceweave.data import open_dataset, collate
    data = open_dataset("facesynth:64")            # or a folder made by `faceweave data prepare`
    loader = torch.utils.data.DataLoader(data, batch_size=16, collate_fn=collate)
"""
from .prepare import LAYOUTS, prepare, synthesize
from .unified import (SPLIT_SEEDS, FaceSynthDataset, UnifiedDataset, UnifiedWriter, attribute_vector,
                      collate, open_dataset)

__all__ = ["LAYOUTS", "SPLIT_SEEDS", "FaceSynthDataset", "UnifiedDataset", "UnifiedWriter",
           "attribute_vector", "collate", "open_dataset", "prepare", "synthesize"]
