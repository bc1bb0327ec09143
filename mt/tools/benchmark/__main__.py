"""``python -m mt.tools.benchmark`` = ``mt benchmark``."""

import sys

from mt.tools.benchmark.cli import main

sys.exit(main())
