"""``python -m tui [--data-dir DIR]``: the chat UI on a data dir."""

import sys

from ._run import main

sys.exit(main())
