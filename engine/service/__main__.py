"""`python -m engine.service --home DIR`: the service, as clients start it in the background."""

import sys

from engine.service.server import main

sys.exit(main())
