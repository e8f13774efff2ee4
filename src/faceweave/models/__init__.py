"""Network families, one readable file each (a dataclass config with named presets + the nn.Module).

parser.py        FaceParser: UNet, 19-class face parsing (the ruler's mask reader)
classifier.py    AttributeClassifier: ResNet, multi-label attributes + embedding (the ruler's eyes)
text_encoder.py  the frozen offline MiniLM sentence encoder (per-token states, pooled vector)
unet.py          the denoiser backbone (ADM/LDM UNet with cross-attention)
conditioner.py   text / attributes / mask / sketch -> condition tokens and spatial channels
denoiser.py      ConditionalDenoiser = Conditioner + UNet + EDM preconditioning
"""
