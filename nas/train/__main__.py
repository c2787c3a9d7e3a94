import sys

from nas.train.cli import main

sys.exit(main())
