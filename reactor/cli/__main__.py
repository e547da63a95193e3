"""`python -m reactor.cli ARGS` is `ps-health ARGS`."""

import sys

from reactor.cli.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
