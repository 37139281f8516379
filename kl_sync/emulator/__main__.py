"""``python -m kl_sync.emulator --port 8900 --data-dir .kl_sync/emulator``"""

import argparse
import sys

from kl_sync.emulator.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kl_sync.emulator", description=run.__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
