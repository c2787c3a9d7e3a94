import sys

from nas.search import main

sys.exit(main())
