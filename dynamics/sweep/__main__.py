"""``python -m dynamics.sweep SPEC.toml``: see :mod:`dynamics.sweep`."""
import sys

from dynamics.sweep import main

sys.exit(main())
