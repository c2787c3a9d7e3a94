import sys

from nas.export import main

sys.exit(main())
