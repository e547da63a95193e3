"""Type prompts into tmux panes safely: sanitised, literal, verified, then submitted."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass

from reactor.errors import PsHealthError
from reactor.tmux_control import ControlClient, ControlLost

log = logging.getLogger(__name__)

_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_LINE_BREAKS = re.compile(r"[\t\n\r\x85\u2028\u2029]")
# C0, DEL, C1, and lone surrogates (they cannot be encoded into tmux's argv).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SPACE_RUNS = re.compile(r" {2,}")
# Whitespace and box-drawing characters: a TUI input box wraps and frames long input.
_LAYOUT = re.compile(r"[\s\u2500-\u259f]+")

# tmux packs a client's argv into one message of at most 16 KiB ("command too long").
_CHUNK_BYTES = 8000
# Compare this many trailing characters: the pane shows only the end of a long text.
_TAIL_CHARS = 30
# tmux messages that mean the server or the target is not there, as opposed to broken.
_MISSING = ("no server running", "can't find", "(No such file or directory)",
            "(Connection refused)")


def sanitise(text: str) -> str:
    """Return text safe to type: no escape sequences or control characters, one line."""
    text = _OSC.sub("", _CSI.sub("", text))
    text = _LINE_BREAKS.sub(" ", text)
    text = _CONTROLS.sub("", text)
    # format characters (bidi overrides, zero-width spaces) make the pane show other than what is typed
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _SPACE_RUNS.sub(" ", text).strip()


def _squash(text: str) -> str:
    """Drop layout characters the pane adds where the text had none (wraps, padding, frames)."""
    return _LAYOUT.sub("", text)


def _chunks(text: str) -> list[str]:
    """Split text into pieces whose UTF-8 form fits in one tmux command."""
    pieces: list[str] = []
    start, size = 0, 0
    for i, char in enumerate(text):
        width = len(char.encode("utf-8"))
        if size + width > _CHUNK_BYTES:
            pieces.append(text[start:i])
            start, size = i, 0
        size += width
    pieces.append(text[start:])
    return pieces


def _guard_semicolon(piece: str) -> str:
    """Escape a trailing ';', which tmux's argv parser takes as a command separator."""
    return piece[:-1] + "\\;" if piece.endswith(";") else piece


class TmuxError(PsHealthError):
    """A tmux command failed; `missing` says the server or target is not there."""

    def __init__(self, message: str, missing: bool = False, partial: bool = False):
        super().__init__(message)
        self.missing = missing
        self.partial = partial


@dataclass(frozen=True)
class Outcome:
    """What happened to one prompt: delivered, target_missing or failed."""

    outcome: str
    detail: str
    latency_ms: float


class Tmux:
    """One tmux server, addressed by -L socket name, -S socket path, or the default.

    With control=True (the default) commands go through one persistent control-mode client
    (reactor.tmux_control); while it cannot attach, each command runs as its own tmux process.
    """

    def __init__(self, socket_name: str | None = None, socket_path: str | None = None,
                 control: bool = True):
        if socket_name and socket_path:
            raise ValueError("give socket_name or socket_path, not both")
        self._where = {"socket_name": socket_name, "socket_path": socket_path}
        self._server = None  # libtmux, for a process per command; imported when first needed (~4 MB)
        self._control: ControlClient | None = None
        if control:
            path = socket_path or _socket_path(socket_name)
            self._control = ControlClient([shutil.which("tmux") or "tmux", "-S", path], path)

    def close(self) -> None:
        """End the control-mode client, if one is attached."""
        if self._control is not None:
            self._control.close()

    def _run(self, *args: str) -> list[str]:
        """Run one tmux command with exact argv; raise TmuxError on any failure."""
        if self._control is not None:
            try:
                lines = self._control.run(args)
            except RuntimeError as exc:
                message = str(exc)
                raise TmuxError(f"tmux {args[0]}: {message}",
                                missing=any(marker in message for marker in _MISSING)) from None
            except ControlLost as exc:
                if args[0] == "send-keys":
                    # The keys may have arrived, so no second try here; tell a dead server apart.
                    target = args[args.index("-t") + 1]
                    raise TmuxError(f"tmux {args[0]}: {exc}", partial=True,
                                    missing=self._exists(target, self._exec) is False) from None
                lines = None  # a look at the pane: ask again in a process of its own
            if lines is not None:
                return lines
        return self._exec(*args)

    def _exec(self, *args: str) -> list[str]:
        """Run one tmux command as its own process; raise TmuxError on any failure."""
        try:
            if self._server is None:
                import libtmux
                self._server = libtmux.Server(**self._where)
            # In argv form an argument ending in ";" separates commands: escape it.
            result = self._server.cmd(*(_guard_semicolon(arg) for arg in args))
        except Exception as exc:  # tmux missing, unencodable argv, OS errors
            raise TmuxError(f"tmux {args[0]}: {exc}") from exc
        if result.returncode != 0:
            message = " ".join(result.stderr).strip() or f"exit status {result.returncode}"
            missing = any(marker in message for marker in _MISSING)
            raise TmuxError(f"tmux {args[0]}: {message}", missing=missing)
        return result.stdout

    def _screen(self, target: str) -> str:
        # display-message resolves a missing target silently (empty, or another pane);
        # capture-pane fails on it, so it doubles as the existence check.
        return "\n".join(self._run("capture-pane", "-p", "-J", "-t", target))

    def target_exists(self, target: str) -> bool | None:
        """True if the pane exists, False if it or the server is gone, None if unknown."""
        return self._exists(target, self._run)

    def _exists(self, target: str, run) -> bool | None:
        try:
            run("capture-pane", "-p", "-t", target, "-S", "0", "-E", "0")
        except TmuxError as exc:
            if exc.missing:
                return False
            log.warning("cannot tell whether %s exists: %s", target, exc)
            return None
        return True

    def capture(self, target: str) -> str | None:
        """The pane's visible screen with wrapped lines joined, or None on error."""
        try:
            return self._screen(target)
        except TmuxError as exc:
            log.debug("capture of %s failed: %s", target, exc)
            return None

    def send_literal(self, target: str, text: str) -> None:
        """Type sanitise(text) into the pane without submitting it; raise TmuxError."""
        for n, piece in enumerate(_chunks(sanitise(text))):
            try:
                # "--" keeps a leading "-" from being parsed as an option.
                self._run("send-keys", "-t", target, "-l", "--", piece)
            except TmuxError as exc:
                exc.partial = exc.partial or n > 0
                raise

    def send_enter(self, target: str) -> None:
        """Press Enter in the pane; raise TmuxError."""
        self._run("send-keys", "-t", target, "Enter")

    def deliver(self, target: str, text: str, submit_delay: float,
                attempts: int = 3) -> Outcome:
        """Type text, wait submit_delay, check its tail is on screen, press Enter; never raise."""
        start = time.monotonic()
        attempts = max(1, attempts)
        clean = sanitise(text)
        if not clean:
            return Outcome("failed", "nothing left to send after sanitising", 0.0)
        tail = _squash(clean)[-_TAIL_CHARS:]
        if not tail:  # text made only of frame characters: nothing to recognise on screen
            return Outcome("failed", "text has nothing visible to verify", 0.0)
        try:
            before = _squash(self._screen(target))
        except TmuxError as exc:
            return self._error(exc, start)
        latency: float | None = None
        reason = "text not visible in pane"
        for attempt in range(1, attempts + 1):
            if latency is None:
                try:
                    self.send_literal(target, clean)
                except TmuxError as exc:
                    if exc.missing or exc.partial or attempt == attempts:
                        return self._error(exc, start)
                    # Nothing landed, so sending again cannot duplicate the text.
                    reason = str(exc)
                    time.sleep(submit_delay)
                    continue
                latency = _ms_since(start)
            # Retries only look again: typing the text twice would be worse than failing.
            time.sleep(submit_delay)
            try:
                after = _squash(self._screen(target))
            except TmuxError as exc:
                return self._error(exc, start, latency)
            if after.count(tail) > before.count(tail) or (tail in after and after != before):
                try:
                    self.send_enter(target)
                except TmuxError as exc:
                    return self._error(exc, start, latency)
                log.debug("delivered %d chars to %s (attempt %d)", len(clean), target, attempt)
                return Outcome("delivered", f"submitted on attempt {attempt}", latency)
            reason = "text not visible in pane"
        log.warning("prompt to %s failed: %s after %d attempts", target, reason, attempts)
        return Outcome("failed", f"{reason} after {attempts} attempts",
                       latency if latency is not None else _ms_since(start))

    @staticmethod
    def _error(exc: TmuxError, start: float, latency: float | None = None) -> Outcome:
        """Map a tmux failure to target_missing or failed, keeping tmux's message."""
        ms = latency if latency is not None else _ms_since(start)
        if exc.missing:
            return Outcome("target_missing", str(exc), ms)
        log.warning("tmux error: %s", exc)
        return Outcome("failed", str(exc), ms)


def _socket_path(name: str | None) -> str:
    """The socket a tmux client uses for -L NAME, or without -L/-S (inside tmux: $TMUX's)."""
    if name is None and os.environ.get("TMUX"):
        return os.environ["TMUX"].split(",")[0]
    folder = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(folder, f"tmux-{os.getuid()}", name or "default")


def _ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000.0
