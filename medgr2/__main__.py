"""``python -m medgr2`` is the ``medgr2`` command."""

from medgr2.cli import main

main()
