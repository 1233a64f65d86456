import sys

from taskrel.cli import main

sys.exit(main())
