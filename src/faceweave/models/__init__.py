"""Network families, one readable file each (a dataclass config with named presets + the nn.Module).

parser.py      FaceParser: UNet, 19-class face parsing (the ruler's mask reader)
classifier.py  AttributeClassifier: ResNet, multi-label attributes + embedding (the ruler's eyes)
"""
