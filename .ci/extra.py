"""Print an optional-dependency group of pyproject.toml, one requirement per word (for pip)."""

import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    print(" ".join(tomllib.load(f)["project"]["optional-dependencies"][sys.argv[1]]))
