"""Research code, not used by the nodes: toy problems with exact denoisers (:mod:`.mixtures`),
learned yardsticks (:mod:`.learned`), the demo (:mod:`.demo`) and the defaults' sweep
(:mod:`.experiments`). numpy / matplotlib / scikit-learn are imported only where needed."""

from .mixtures import *  # noqa: F401,F403  (the toy's public names: research.GaussianMixture, ...)
from .mixtures import __all__  # noqa: F401
