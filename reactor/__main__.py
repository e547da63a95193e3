"""`python -m reactor` runs the reactor, same as `ps-health reactor`."""

import sys

from reactor.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reactor", *sys.argv[1:]]))
