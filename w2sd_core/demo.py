"""``python -m w2sd_core.demo`` still works: the code lives in :mod:`w2sd_core.toy.demo`."""

from .toy.demo import *  # noqa: F401,F403
from .toy.demo import main

if __name__ == "__main__":
    main()
