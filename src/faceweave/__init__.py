"""faceweave: multi-modal face generation and editing (text, attributes, masks, sketches)."""
from .conditions import CLASSES, CELEBA_ATTRIBUTES, Conditions
from .errors import FaceweaveError

__version__ = "0.1.0"
__all__ = ["CLASSES", "CELEBA_ATTRIBUTES", "Conditions", "FaceweaveError", "__version__"]
