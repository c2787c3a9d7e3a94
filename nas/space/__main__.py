import sys

from nas.space import main

sys.exit(main())
