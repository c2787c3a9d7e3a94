import sys

from nas.data import main

sys.exit(main())
