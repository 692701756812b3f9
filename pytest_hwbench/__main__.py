"""``python -m pytest_hwbench``: the same as the ``hwbench`` command."""

from pytest_hwbench.cli import main

raise SystemExit(main())
