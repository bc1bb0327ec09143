"""`python -m mt fit --config ...` is the same as `mt fit --config ...`."""

import sys

from mt.commands import main

if __name__ == "__main__":
    sys.exit(main())
