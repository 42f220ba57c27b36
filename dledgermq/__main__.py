"""`python -m dledgermq` runs the CLI."""

from dledgermq.cli import main

raise SystemExit(main())
