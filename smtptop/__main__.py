"""``python -m smtptop``."""

import sys

from smtptop.cli import main

sys.exit(main())
