"""Application settings from PS_HEALTH_* environment variables, read once."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from reactor.errors import PsHealthError

DEFAULT_PORT = 54329


@dataclass(frozen=True)
class Config:
    """Where the database is and where local state lives."""

    dsn: str | None
    home: Path
    port: int
    host_label: str
    tmux_socket: str | None = None

    def require_dsn(self) -> str:
        """The conninfo to use, or a clear error saying how to configure one."""
        if self.dsn is not None:
            return self.dsn
        from reactor.db.cluster import Cluster  # local import: cluster pulls in subprocess helpers

        cluster = Cluster.from_config(self)
        if cluster.is_running():
            return cluster.dsn()
        where = str(cluster.home) + ("" if cluster.home == self.home else f" (used for {self.home})")
        if cluster.exists():
            raise PsHealthError(
                f"no database: PS_HEALTH_DSN is not set and the embedded database in {where} is stopped",
                hint=f"start it with `ps-health db up` (PS_HEALTH_HOME={self.home}), or set PS_HEALTH_DSN")
        raise PsHealthError(
            f"no database: PS_HEALTH_DSN is not set and there is no embedded database in {where} "
            "(PS_HEALTH_HOME, by default .ps-health in the current folder)",
            hint="set PS_HEALTH_HOME to the .ps-health folder of the checkout where `make run` set it up, or "
                 "PS_HEALTH_DSN (or PGHOST/PGDATABASE) to your database; `ps-health db up` here would create "
                 "a second, empty one")


def load(environ: dict | None = None) -> Config:
    """Read the environment once; libpq's own PG* variables count as a configured DSN."""
    env = dict(os.environ if environ is None else environ)
    dsn = env.get("PS_HEALTH_DSN")
    if dsn is None and any(env.get(k) for k in ("PGHOST", "PGDATABASE", "PGSERVICE")):
        dsn = ""  # empty conninfo: libpq reads the PG* variables itself
    try:
        port = int(env.get("PS_HEALTH_PORT", DEFAULT_PORT))
        if not 1 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise PsHealthError(f"PS_HEALTH_PORT must be a port number from 1 to 65535, "
                            f"got {env['PS_HEALTH_PORT']!r}") from None
    return Config(
        dsn=dsn,
        home=Path(env.get("PS_HEALTH_HOME") or Path.cwd() / ".ps-health").resolve(),
        port=port,
        host_label=env.get("PS_HEALTH_HOST") or socket.gethostname(),
        tmux_socket=env.get("PS_HEALTH_TMUX_SOCKET") or None,
    )
