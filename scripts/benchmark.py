#!/usr/bin/env python
"""Alias of ``mt benchmark``: ``data``, ``decode``, ``train`` and ``length``; see ``--help``, :mod:`mt.tools.benchmark`.

Results go to ``benchmarks/results/{subcommand}-{device}.json`` under the current folder (or
``--out``); ``benchmarks/README.md`` explains the figures.
"""

import sys

from mt.tools.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
