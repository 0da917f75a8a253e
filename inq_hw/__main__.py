"""``python -m inq_hw``: the inq-hw command line."""

from inq_hw.cli import main

raise SystemExit(main())
