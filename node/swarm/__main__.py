"""``python -m node.swarm ARGS``: the `rumor swarm` command (see `node.swarm._cli`)."""

import sys

from ._cli import main

sys.exit(main(sys.argv[1:]))
