import sys

from kl_sync.cli import main

sys.exit(main())
