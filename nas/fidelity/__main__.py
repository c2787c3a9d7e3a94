import sys

from nas.fidelity import main

sys.exit(main())
