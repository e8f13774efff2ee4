"""Network families, one readable file each (a dataclass config with named presets + the nn.Module).

parser.py        FaceParser: UNet, 19-class face parsing (the ruler's mask reader)
classifier.py    AttributeClassifier: ResNet, multi-label attributes + embedding (the ruler's eyes)
text_encoder.py  the frozen offline MiniLM sentence encoder (per-token states, pooled vector)
unet.py          the denoiser backbone (ADM/LDM UNet with cross-attention)
conditioner.py   text / attributes / mask / sketch -> condition tokens and spatial channels
denoiser.py      ConditionalDenoiser = Conditioner + UNet + EDM preconditioning
diffuser.py      Collaborative Diffusion's dynamic diffuser (influence networks)
stylegan2.py     StyleGAN2 generator + discriminator, losses, augmentation (pure PyTorch)
modality_ae.py   MM2Latent's mask and sketch autoencoders (their codes feed the mapper)
mapper.py        MM2Latent's two-path mapper: text + mask code + sketch code -> W+
gan_encoder.py   the GAN inversion encoder: image -> W+ (pSp / e4e style)
mm2latent.py     one gan model: generator + autoencoders + mapper + encoder
"""
