import sys

from datasets.features.cli import main

sys.exit(main())
