"""``python -m s2sgrad``: the same command line as the ``s2sgrad`` script."""

from s2sgrad.cli import main

raise SystemExit(main())
