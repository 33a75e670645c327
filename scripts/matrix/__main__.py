"""python -m scripts.matrix"""
import sys

from scripts.matrix.cli import main

sys.exit(main())
