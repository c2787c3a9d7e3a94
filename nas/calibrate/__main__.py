import sys

from nas.calibrate import main

sys.exit(main())
