#!/usr/bin/env python
"""Translate a text file with a checkpoint; see ``--help`` and :mod:`mt.translate`."""

import sys

from mt.translate import main

if __name__ == "__main__":
    sys.exit(main())
