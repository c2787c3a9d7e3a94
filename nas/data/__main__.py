import sys

from nas.data.cli import main

sys.exit(main())
