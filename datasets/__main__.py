import sys

from datasets.cli import main

sys.exit(main())
