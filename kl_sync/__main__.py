import sys

from kl_sync.app.cli import main

sys.exit(main())
