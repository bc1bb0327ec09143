#!/usr/bin/env python
"""Score translation files with sacreBLEU BLEU/chrF (and per-source-length buckets).

See ``mt/evaluate_cli.py`` for the options; ``--help`` lists them.
"""

import sys

from mt.evaluate_cli import main

if __name__ == "__main__":
    sys.exit(main())
