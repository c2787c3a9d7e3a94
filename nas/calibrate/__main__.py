import sys

from nas.calibrate.cli import main

sys.exit(main())
