#!/usr/bin/env python
"""Write the synthetic length-generalisation corpus (grammar: ``mt/synthetic.py``).

    python scripts/make_synthetic.py --out data/synthetic [--seed 0] [--train-size 20000]

Writes ``{out}/{train,val,test,test_len{a}-{b}}.{src,tgt}``, the layout that
``configs/synthetic-*.yaml`` read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mt.synthetic import SyntheticSpec, parse_bands, write_corpus


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, write the corpus, print the line counts; returns the exit code."""
    default = SyntheticSpec()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="data/synthetic", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=default.seed)
    p.add_argument("--train-size", type=int, default=default.train_size)
    p.add_argument("--val-size", type=int, default=default.val_size)
    p.add_argument("--test-per-band", type=int, default=default.test_per_band)
    p.add_argument(
        "--train-lengths",
        type=int,
        nargs=2,
        default=list(default.train_lengths),
        metavar=("MIN", "MAX"),
        help="source words (default: %(default)s)",
    )
    p.add_argument(
        "--val-lengths",
        type=int,
        nargs=2,
        default=list(default.val_lengths),
        metavar=("MIN", "MAX"),
        help="source words (default: %(default)s)",
    )
    p.add_argument(
        "--test-bands",
        nargs="+",
        metavar="LO-HI",
        default=[f"{lo}-{hi}" for lo, hi in default.test_bands],
        help="test length bands in source words (default: %(default)s)",
    )
    args = p.parse_args(argv)
    try:
        spec = SyntheticSpec(
            train_size=args.train_size,
            val_size=args.val_size,
            test_per_band=args.test_per_band,
            train_lengths=tuple(args.train_lengths),
            val_lengths=tuple(args.val_lengths),
            test_bands=parse_bands(args.test_bands),
            seed=args.seed,
        )
        counts = write_corpus(args.out, spec)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, n in counts.items():
        print(f"{args.out}/{name}.{{src,tgt}}: {n} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
