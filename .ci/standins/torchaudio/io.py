"""torchaudio.io stand-in: importing works, any use raises (see the package docstring)."""

from . import unavailable


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    unavailable(__name__, name)
