"""ps-health: keeps AI coding-agent project supervisors healthy from outside."""

__version__ = "0.1.0"
