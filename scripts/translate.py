#!/usr/bin/env python
"""Alias of ``mt translate``: translate a text file with a checkpoint; see ``--help``."""

import sys

from mt.tools.translate import main

if __name__ == "__main__":
    sys.exit(main())
