#!/usr/bin/env python
"""Download (or copy from a local mirror) the corpora used by ``mt``; see ``data/README.md``.

Examples::

    python scripts/download_data.py                       # multi30k + iwslt17 into data/
    python scripts/download_data.py --corpus multi30k --mirror /work/shared/data
    python scripts/download_data.py --sacrebleu-test-set wmt14 --langpair de-en

All logic lives in :mod:`mt.corpora`; this wrapper only parses arguments and turns
:class:`mt.corpora.DataError` into ``error: ...`` on stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mt.corpora import (
    CORPORA,
    MIRROR_ENV,
    DataError,
    FetchReport,
    fetch_iwslt17,
    fetch_multi30k,
    fetch_sacrebleu_test_set,
    mirror_from_env,
)


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Fetch corpora into {out}/{corpus}/{split}.{lang} and verify them.",
    )
    parser.add_argument(
        "--corpus",
        choices=[*CORPORA, "all"],
        default=None,
        help="corpus to fetch (default: all, or none when --sacrebleu-test-set is given)",
    )
    parser.add_argument("--out", type=Path, default=Path("data"), help="output root (data)")
    parser.add_argument(
        "--mirror",
        default=None,
        help=f"copy from DIR/{{corpus}}/{{split}}.{{lang}} instead of downloading "
        f"(default: ${MIRROR_ENV}; pass --mirror '' to force downloading)",
    )
    parser.add_argument("--splits", type=_csv, default=None, help="comma list of splits")
    parser.add_argument(
        "--langs", type=_csv, default=None, help="comma list of Multi30k languages (en,de,fr,cs)"
    )
    parser.add_argument(
        "--sacrebleu-test-set",
        default=None,
        metavar="NAME",
        help="also fetch a sacreBLEU test set, e.g. wmt14, into {out}/NAME-{langpair}/test.*",
    )
    parser.add_argument("--langpair", default="de-en", help="pair for --sacrebleu-test-set")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    return parser


def run(args: argparse.Namespace) -> FetchReport:
    """Fetch what ``args`` asks for; raises :class:`DataError` on failure."""
    if args.mirror is None:
        mirror = mirror_from_env()
    else:
        mirror = Path(args.mirror) if args.mirror.strip() else None
    corpus = args.corpus
    if corpus is None and args.sacrebleu_test_set is None:
        corpus = "all"
    if (args.splits or args.langs) and corpus == "all":
        raise DataError("--splits/--langs need a single --corpus (multi30k or iwslt17)")
    if args.langs and corpus == "iwslt17":
        raise DataError("--langs applies to multi30k only (iwslt17 is de-en)")
    if mirror is not None:
        print(f"using mirror {mirror}", flush=True)
    report = FetchReport()
    common = {"mirror": mirror, "timeout": args.timeout}
    if corpus in ("multi30k", "all"):
        report.extend(fetch_multi30k(args.out, splits=args.splits, langs=args.langs, **common))
    if corpus in ("iwslt17", "all"):
        report.extend(fetch_iwslt17(args.out, splits=args.splits, **common))
    if args.sacrebleu_test_set is not None:
        report.extend(
            fetch_sacrebleu_test_set(args.sacrebleu_test_set, args.langpair, args.out, **common)
        )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except DataError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except OSError as exc:  # anything the library did not anticipate, still one line
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted (no partial files were left in place)", file=sys.stderr)
        return 1
    print(f"done: {report.summary()} -> {os.fspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
