"""Where the built programs are. ctest sets CONNLEAK (the tracer), PQCLIENT
(the libpq test client) and BUILD_DIR; by hand, they default to the repo's
build/ directory."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD_DIR = os.environ.get("BUILD_DIR") or os.path.join(REPO, "build")
CONNLEAK = os.environ.get("CONNLEAK") or os.path.join(BUILD_DIR, "connleak")
PQCLIENT = os.environ.get("PQCLIENT") or os.path.join(BUILD_DIR, "tests", "pqclient")
PYTHON = "/usr/bin/python3"
