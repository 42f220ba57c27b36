"""The `dledgermq` command, one module per command family."""

from dledgermq.cli.cluster import main

__all__ = ["main"]
