import sys

from nas.fidelity.cli import main

sys.exit(main())
