import sys

from sakd.cli import main

sys.exit(main())
