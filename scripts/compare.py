#!/usr/bin/env python
"""Alias of ``mt compare``: compare trained models on one test set (report.md, report.json, plots).

    python scripts/compare.py --checkpoints runs/a runs/b --src SRC --ref REF --out DIR

See ``mt/eval/compare.py`` for what is computed; ``--help`` lists the options.
"""

import sys

from mt.eval.compare import main

if __name__ == "__main__":
    sys.exit(main())
