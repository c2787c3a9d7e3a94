import sys

from nas.dashboard import main

sys.exit(main())
