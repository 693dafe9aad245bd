"""``python -m twin.cli`` is the ``twin`` command."""

import sys

from twin.cli import main

sys.exit(main())
