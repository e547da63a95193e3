"""Subcommands (filled in by their owner)."""


def register(sub) -> None:
    """Add this module's subcommands to the parser."""
