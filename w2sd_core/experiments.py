"""``python -m w2sd_core.experiments`` still works: the code lives in :mod:`w2sd_core.toy.experiments`."""

from .toy.experiments import *  # noqa: F401,F403
from .toy.experiments import main

if __name__ == "__main__":
    main()
