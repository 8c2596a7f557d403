"""The `planfile` command line."""

from engine.cli.main.main import main

__all__ = ["main"]
