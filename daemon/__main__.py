"""`python -m sensorcast` is the `sensorcast` command."""

import sys

from sensorcast.cli import main

sys.exit(main())
