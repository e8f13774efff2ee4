"""python -m faceweave.cli ..."""
import sys

from . import main

sys.exit(main())
