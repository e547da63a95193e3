"""The reactor's start-up options and their defaults, in one place: the `reactor` command's flags and the
reactor itself both read them (thresholds come from SQL with each prompt instead)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """Everything the reactor is told at start; thresholds come from SQL with each prompt."""

    dsn: str
    host: str
    worker: str
    tmux_socket: str | None = None
    tmux_socket_path: str | None = None
    tmux_control: bool = True
    poll_interval: float = 5.0
    probe_interval: float = 15.0
    lease: int = 60
    batch: int = 100
    max_held: int = 1000
    run_checks_every: float = 0.0
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    shutdown_timeout: float = 15.0
    spool_dir: str | None = None
