"""`python -m connector`."""

import sys

from connector.main import main

sys.exit(main())
