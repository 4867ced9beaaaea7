"""``python -m boxlite._keeper HOME``: serves the networks of HOME's detached boxes while no
runtime holds the home. A runtime's guardian runs it once that runtime is gone; it leaves when
a runtime opens the home, or when no detached box with a network runs (``docs/network.md``)."""

from __future__ import annotations

import logging
import sys

from ._native import _keep_detached_networks


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s boxlite keeper: %(message)s")
    try:
        _keep_detached_networks(sys.argv[1])
    except Exception as error:  # noqa: BLE001 - whatever stopped it goes to the keeper's log
        logging.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
