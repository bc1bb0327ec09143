#!/usr/bin/env python
"""Alias of ``mt evaluate``: score translation files with sacreBLEU BLEU/chrF and length buckets.

``--help`` lists the options (:func:`mt.commands.evaluate`).
"""

import sys

from mt.eval.evaluate_cli import main

if __name__ == "__main__":
    sys.exit(main())
