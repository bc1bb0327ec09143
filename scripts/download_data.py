#!/usr/bin/env python
"""Alias of ``mt download`` (options: ``--help``, :func:`mt.commands.download`); see data/README.md.

    python scripts/download_data.py --corpus multi30k --mirror /work/shared/data
"""

import sys

from mt.commands import run_command

if __name__ == "__main__":
    sys.exit(run_command("download"))
