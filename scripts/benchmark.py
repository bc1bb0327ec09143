#!/usr/bin/env python
"""Benchmarks of mt: ``data``, ``decode`` and ``train``; see ``--help`` and :mod:`mt.benchmark`.

Results go to ``benchmarks/results/{subcommand}-{device}.json``; ``benchmarks/README.md`` explains
the figures.
"""

import sys

from mt.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
