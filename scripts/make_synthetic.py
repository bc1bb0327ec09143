#!/usr/bin/env python
"""Alias of ``mt synthetic``: write the synthetic length-generalisation corpus (``--help``).

    python scripts/make_synthetic.py --out data/synthetic [--seed 0] [--train-size 20000]

Writes ``{out}/{train,val,test,test_len{a}-{b}}.{src,tgt}``, the layout that
``configs/synthetic-*.yaml`` read.
"""

import sys

from mt.commands import run_command

if __name__ == "__main__":
    sys.exit(run_command("synthetic"))
