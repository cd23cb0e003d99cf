import sys

from bridge.simulator.cli import main

sys.exit(main())
