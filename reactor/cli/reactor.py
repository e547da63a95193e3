"""`ps-health reactor`: the flags of the per-host reactor process (the loop is reactor.process.service)."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import textwrap

from reactor.cli import util as cliutil
from reactor.process.options import Options

# Longer than a day is not an interval or timeout any loop here means (and 1e300 overflows sleeps).
_MAX_SECONDS = 86400


def default_worker(host: str) -> str:
    """HOST:PID and a random part: a worker id belongs to the first login that claims with it, so one that another
    host's login could guess (HOST:PID alone) could be claimed first, and this reactor then refused."""
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        if kind is float and not value <= _MAX_SECONDS:
            raise argparse.ArgumentTypeError(f"must be at most {_MAX_SECONDS} seconds, got {text}")
        return value
    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= _MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {_MAX_SECONDS} seconds, got {text}")
    return value


def _bounded(low: int, high: int):
    def parse(text: str) -> int:
        value = _positive(int)(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value
    return parse


def register(sub) -> None:
    """Add the `reactor` subcommand."""
    p = sub.add_parser(
        "reactor", help="run the per-host reactor: deliver prompts into tmux, probe the host",
        description=textwrap.fill("Listen for prompts of this host, claim them, type them into their tmux panes "
                                  "and record the outcome; report output-file times, tmux and pid liveness and "
                                  "transcript usage. Stops cleanly on SIGTERM/SIGINT, giving back prompts it has "
                                  "not typed.", 88),
        epilog="examples:\n"
               "  ps-health reactor\n"
               "  ps-health reactor --host build-01:alice --tmux-socket alice --run-checks-every 60\n"
               "  ps-health reactor --metrics-port 9464 -v\n\n"
               "Environment: PS_HEALTH_DSN (or PG*), PS_HEALTH_HOST, PS_HEALTH_TMUX_SOCKET.\n"
               "See docs/operations.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log debug detail to stderr")
    p.add_argument("--host", type=cliutil.host_label,
                   help="host label to serve (default: PS_HEALTH_HOST, else the hostname)")
    p.add_argument("--worker", help="worker id recorded on claimed prompts (default: HOST:PID:RANDOM, which no "
                                    "other login can take first); one serves one host at a time")
    sock = p.add_mutually_exclusive_group()
    sock.add_argument("--tmux-socket", metavar="NAME",
                      help="tmux server socket name, as tmux -L (default: PS_HEALTH_TMUX_SOCKET, else "
                           "the user's default server)")
    sock.add_argument("--tmux-socket-path", metavar="PATH", help="tmux server socket path, as tmux -S")
    p.add_argument("--no-tmux-control", dest="tmux_control", action="store_false",
                   help="run a tmux process per step instead of keeping one control-mode client "
                        "attached (about 2 ms more per step; tmux ls no longer shows it attached)")
    p.add_argument("--poll-interval", type=_positive(float), default=Options.poll_interval, metavar="SECONDS",
                   help="claim even without a notification this often (default %(default)g)")
    p.add_argument("--probe-interval", type=_non_negative, default=Options.probe_interval, metavar="SECONDS",
                   help="probe tmux targets, output files, pids and transcripts this often; 0 turns "
                        "probes off (default %(default)g)")
    p.add_argument("--lease", type=_bounded(1, 86400), default=Options.lease, metavar="SECONDS",
                   help="lease on claimed prompts, renewed while they wait or are typed (default %(default)s)")
    p.add_argument("--batch", type=_bounded(1, 1000), default=Options.batch, metavar="N",
                   help="prompts claimed per call (default %(default)s)")
    p.add_argument("--max-held", type=_bounded(1, 100000), default=Options.max_held, metavar="N",
                   help="claim no more while this many prompts are queued or being typed; a larger "
                        "backlog waits in the outbox (default %(default)s)")
    p.add_argument("--run-checks-every", type=_non_negative, default=Options.run_checks_every, metavar="SECONDS",
                   help="also run the sweep, run_checks(), this often: for databases without "
                        "pg_cron (default %(default)g: off)")
    p.add_argument("--metrics-port", type=_bounded(1, 65535), metavar="PORT",
                   help="serve Prometheus metrics on this port (default: off)")
    p.add_argument("--metrics-addr", default=Options.metrics_addr, metavar="ADDR",
                   help="address the metrics server binds (default %(default)s)")
    spool_group = p.add_mutually_exclusive_group()
    spool_group.add_argument("--spool", metavar="DIR",
                             help="the host spool the agents' hooks write to, forwarded to the database "
                                  "(default: PS_HEALTH_SPOOL, else ~/.local/state/ps-health/spool)")
    spool_group.add_argument("--no-spool", action="store_true",
                             help="do not forward agent facts from a host spool")
    p.add_argument("--shutdown-timeout", type=_positive(float), default=Options.shutdown_timeout, metavar="SECONDS",
                   help="on stop, wait this long for typing in progress (default %(default)g)")
    p.set_defaults(func=_reactor)


def _reactor(args: argparse.Namespace, cfg) -> int:
    from reactor.agent import spool
    from reactor.process import memory
    from reactor.process.service import Reactor  # the loop's imports are not needed by other commands

    memory.limit_arenas()

    if not args.verbose:
        # The reactor logs one line per delivery with its latency; the dispatcher's own is a duplicate.
        logging.getLogger("reactor.process.dispatcher").setLevel(logging.WARNING)
    host = args.host or cfg.host_label
    socket_name = None if args.tmux_socket_path else (args.tmux_socket or cfg.tmux_socket)
    opts = Options(dsn=cfg.require_dsn(), host=host, worker=args.worker or default_worker(host),
                   tmux_socket=socket_name, tmux_socket_path=args.tmux_socket_path, tmux_control=args.tmux_control,
                   poll_interval=args.poll_interval, probe_interval=args.probe_interval, lease=args.lease,
                   batch=args.batch, max_held=args.max_held, run_checks_every=args.run_checks_every,
                   metrics_port=args.metrics_port, metrics_addr=args.metrics_addr,
                   shutdown_timeout=args.shutdown_timeout,
                   spool_dir=None if args.no_spool else (args.spool or spool.default_dir()))
    return Reactor(opts).run()
