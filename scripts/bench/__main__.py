"""python -m scripts.bench (also the load generator and relay children: `_load`, `_relay`)"""
import sys

from scripts.bench.cli import main

sys.exit(main())
