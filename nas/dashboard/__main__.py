import sys

from nas.dashboard.cli import main

sys.exit(main())
