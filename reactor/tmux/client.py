"""One tmux server: look at a pane, and send it keys only while it is the pane that was looked at."""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass

from reactor.errors import PsHealthError
from reactor.tmux.control import ControlClient, ControlLost, quote

log = logging.getLogger(__name__)

_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_LINE_BREAKS = re.compile(r"[\t\n\r\x85\u2028\u2029]")
# C0, DEL, C1, and lone surrogates (they cannot be encoded into tmux's argv).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SPACE_RUNS = re.compile(r" {2,}")
# Besides controls, what no name in the database may hold: format characters, line and paragraph separators,
# and (plain() below) characters unknown to this Python's Unicode version.
_UNSAFE_CATEGORIES = frozenset(("Cf", "Zl", "Zp", "Cn"))

# tmux packs a client's argv into one message of at most 16 KiB ("command too long"); the text
# travels quoted inside the guarded command, where a ' takes four bytes.
_CHUNK_BYTES = 8000
# tmux messages that mean the server or the target is not there, as opposed to broken.
_MISSING = ("no server running", "can't find", "(No such file or directory)",
            "(Connection refused)")


def sanitise(text: str) -> str:
    """Return text safe to type: no escape sequences or control characters, one line."""
    text = _OSC.sub("", _CSI.sub("", text))
    text = _LINE_BREAKS.sub(" ", text)
    text = _CONTROLS.sub("", text)
    # format characters (bidi overrides, zero-width spaces) make the pane show other than what is typed
    if not text.isascii():  # (none is ASCII)
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _SPACE_RUNS.sub(" ", text).strip()


def plain(text: str) -> bool:
    """Whether the database takes text as a name: none of ps_health._unsafe_chars() (C0 and C1 controls, format
    characters such as bidi overrides and zero-width spaces, the line and paragraph separators), no lone
    surrogate (a byte of a file name that is not UTF-8), and no character this Python's Unicode does not know:
    the database's list may name it (U+13439-U+1343F are format characters since Unicode 15)."""
    if _CONTROLS.search(text):
        return False
    return text.isascii() or not any(unicodedata.category(c) in _UNSAFE_CATEGORIES for c in text)


def _chunks(text: str) -> list[str]:
    """Split text into pieces whose UTF-8 form fits in one tmux command."""
    if len(text.encode("utf-8")) + 3 * text.count("'") <= _CHUNK_BYTES:
        return [text]  # the usual prompt: one piece, without looking at each character
    pieces: list[str] = []
    start, size = 0, 0
    for i, char in enumerate(text):
        width = 4 if char == "'" else len(char.encode("utf-8"))
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


class PaneRefused(TmuxError):
    """Keys were not sent: the pane was no longer the one checked, or it entered a mode."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one prompt: delivered, target_missing, failed, deferred or target_changed."""

    outcome: str
    detail: str
    latency_ms: float


@dataclass(frozen=True)
class Look:
    """One look at a pane: who it is (tmux server pid and start time, pane id, pane pid), its mode, its screen."""

    identity: str
    pane_pid: int
    in_mode: bool
    mode: str
    dead: bool
    screen: str
    names: tuple[str, ...] = ()  # the names that name exactly this pane: its id, session:window.pane, the session
    synchronized: bool = False  # synchronize-panes is on: tmux would copy keys to the window's other panes

    def named(self, target: str) -> bool:
        """Whether target names this pane exactly (not a window name, a session-name prefix or another form)."""
        return target in self.names


# display-message shows these fields (all set by tmux, none by the pane's program) before the screen.
_LOOK_FORMAT = ("#{pid} #{start_time} #{pane_id} #{pane_pid} #{pane_in_mode} #{pane_dead} "
                "#{window_active}#{pane_active} #{window_index}.#{pane_index} #{?pane_synchronized,1,0} "
                "#{pane_mode}|#{session_name}")
_LOOK_LINE = re.compile(r"(\d+ \d+ (%\d+) (\d+)) ([01]) ([01]) ([01])([01]) (\d+\.\d+) ([01]) (\S*)\|(.*)")
# Keys are sent only if the pane still shows this when tmux runs them (same server, same pane, no mode, and
# synchronize-panes off: with it on, tmux copies every key to the other panes of the window).
_GUARD = "#{==:#{pid} #{start_time} #{pane_id} #{pane_pid} #{pane_in_mode} #{?pane_synchronized,1,0},%s 0 0}"
_REFUSED = "ps-health:refused"


class Tmux:
    """One tmux server, addressed by -L socket name, -S socket path, or the default.

    With control=True (the default) commands go through one persistent control-mode client
    (reactor.tmux.control); while it cannot attach, each command runs as its own tmux process.
    """

    def __init__(self, socket_name: str | None = None, socket_path: str | None = None,
                 control: bool = True):
        if socket_name and socket_path:
            raise ValueError("give socket_name or socket_path, not both")
        self._where = {"socket_name": socket_name, "socket_path": socket_path}
        self._server = None  # libtmux, for a process per command; imported when first needed (~4 MB)
        self._buffers = itertools.count(1)  # paste buffers made, for unique names (next() is atomic)
        self._control: ControlClient | None = None
        if control:
            path = socket_path or _socket_path(socket_name)
            self._control = ControlClient([shutil.which("tmux") or "tmux", "-S", path], path)

    def close(self) -> None:
        """End the control-mode client, if one is attached."""
        if self._control is not None:
            self._control.close()

    def last_write(self) -> float | None:
        """When the calling thread's last command was written to the control client (time.monotonic());
        None when commands run as processes of their own."""
        return self._control.last_write() if self._control is not None else None

    def _run(self, *commands: tuple[str, ...], keys_to: str | None = None) -> list[str]:
        """Run tmux commands (one round trip) with exact argv; raise TmuxError on any failure.

        keys_to: the target the commands send keys to (never sent twice when the client dies).
        """
        name = commands[0][0]
        if self._control is not None:
            try:
                lines = self._control.run(*commands)
            except RuntimeError as exc:
                message = str(exc)
                raise TmuxError(f"tmux {name}: {message}",
                                missing=any(marker in message for marker in _MISSING)) from None
            except ControlLost as exc:
                if keys_to is not None:
                    # The keys may have arrived, so no second try here; tell a dead server apart.
                    raise TmuxError(f"tmux {name}: {exc}", partial=True,
                                    missing=self._exists(keys_to, self._exec) is False) from None
                lines = None  # a look at the pane: ask again in a process of its own
            if lines is not None:
                return lines
        return self._exec(*commands)

    def _exec(self, *commands: tuple[str, ...]) -> list[str]:
        """Run tmux commands as one process of their own; raise TmuxError on any failure."""
        name = commands[0][0]
        argv: list[str] = []
        for args in commands:
            # In argv form an argument ending in ";" separates commands: escape it; ";" alone separates.
            argv += ([";"] if argv else []) + [_guard_semicolon(arg) for arg in args]
        try:
            if self._server is None:
                import libtmux
                self._server = libtmux.Server(**self._where)
            result = self._server.cmd(*argv)
        except Exception as exc:  # tmux missing, unencodable argv, OS errors
            raise TmuxError(f"tmux {name}: {exc}") from exc
        if result.returncode != 0:
            message = " ".join(result.stderr).strip() or f"exit status {result.returncode}"
            missing = any(marker in message for marker in _MISSING)
            raise TmuxError(f"tmux {name}: {message}", missing=missing)
        return result.stdout

    def _screen(self, target: str) -> str:
        # display-message resolves a missing target silently (empty, or another pane);
        # capture-pane fails on it, so it doubles as the existence check.
        return "\n".join(self._run(("capture-pane", "-p", "-J", "-t", target)))

    def target_exists(self, target: str) -> bool | None:
        """True if the pane exists, False if it or the server is gone, None if unknown."""
        return self._exists(target, self._run)

    def _exists(self, target: str, run) -> bool | None:
        try:
            run(("capture-pane", "-p", "-t", target, "-S", "0", "-E", "0"))
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

    def look(self, target: str) -> Look:
        """Who the pane is, its mode and its screen, in one round trip; raise TmuxError."""
        lines = self._run(("display-message", "-p", "-t", target, _LOOK_FORMAT),
                          ("capture-pane", "-p", "-J", "-t", target))
        match = _LOOK_LINE.fullmatch(lines[0]) if lines else None
        if match is None:
            raise TmuxError(f"tmux display-message: unexpected reply {lines[:1]!r}")
        screen = lines[1:]
        if self._control is not None and screen and screen[0].startswith("%end "):
            # Through the control client the capture's own block follows (after any notifications).
            begin = next((i for i, line in enumerate(screen) if line.startswith("%begin ")), len(screen))
            screen = screen[begin + 1:]
        pane_id, session = match.group(2), match.group(11)
        names = (pane_id, f"{session}:{match.group(8)}") + ((session,) if match.group(6, 7) == ("1", "1") else ())
        return Look(identity=match.group(1), pane_pid=int(match.group(3)), in_mode=match.group(4) == "1",
                    dead=match.group(5) == "1", mode=match.group(10), screen="\n".join(screen), names=names,
                    synchronized=match.group(9) == "1")

    def send_keys(self, target: str, identity: str, *keys: str, literal: bool = False) -> None:
        """Send keys only while the pane is `identity` and in no mode, checked by tmux as it sends them.

        Raise PaneRefused when it no longer is (nothing sent), TmuxError on other failures.
        """
        # "--" keeps a leading "-" of the text from being read as an option.
        send = " ".join(["send-keys", "-t", quote(target), *(["-l", "--"] if literal else []), *map(quote, keys)])
        lines = self._run(("if-shell", "-F", "-t", target, _GUARD % identity, send,
                           f"display-message -p {_REFUSED}"), keys_to=target)
        if _REFUSED in lines:
            raise PaneRefused(f"tmux send-keys: pane {target} changed before the keys were sent")

    def paste(self, target: str, identity: str, text: str) -> None:
        """Send text (already sanitised) as one bracketed paste, only while the pane is `identity` and in no
        mode; raise PaneRefused or TmuxError. An agent that asked for bracketed paste gets it whole, between
        ESC[200~ and ESC[201~, as if pasted from a clipboard."""
        name = f"ps-health-{os.getpid()}-{next(self._buffers)}"
        for n, piece in enumerate(_chunks(text)):
            self._run(("set-buffer", *(["-a"] if n else []), "-b", name, "--", piece))
        paste = " ".join(["paste-buffer", "-p", "-d", "-b", quote(name), "-t", quote(target)])
        try:
            lines = self._run(("if-shell", "-F", "-t", target, _GUARD % identity, paste,
                               f"display-message -p {_REFUSED}"), keys_to=target)
        except TmuxError:
            self._drop_buffer(name)
            raise
        if _REFUSED in lines:
            self._drop_buffer(name)
            raise PaneRefused(f"tmux paste-buffer: pane {target} changed before the text was pasted")

    def _drop_buffer(self, name: str) -> None:
        try:
            self._run(("delete-buffer", "-b", name))
        except TmuxError:
            pass  # gone already, or the server is: nothing to keep

    def send_literal(self, target: str, identity: str, text: str, clean: bool = False) -> None:
        """Type sanitise(text) into the pane without submitting it (clean: text is sanitised); raise TmuxError."""
        for n, piece in enumerate(_chunks(text if clean else sanitise(text))):
            try:
                self.send_keys(target, identity, piece, literal=True)
            except TmuxError as exc:
                exc.partial = exc.partial or n > 0
                raise


def _socket_path(name: str | None) -> str:
    """The socket a tmux client uses for -L NAME, or without -L/-S (inside tmux: $TMUX's)."""
    if name is None and os.environ.get("TMUX"):
        return os.environ["TMUX"].split(",")[0]
    folder = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(folder, f"tmux-{os.getuid()}", name or "default")


# ---------------------------------------------------------------- tmux as a process of its own

TMUX_BIN = "tmux"
TMUX_TIMEOUT = 2.0
_PANE_FORMAT = ("#{pid} #{start_time} #{pane_pid} #{window_active}#{pane_active} #{pane_id} "
                "#{session_name}:#{window_index}.#{pane_index} #{session_name}")
_PANE_LINE = re.compile(r"^(\d+) (\d+) (\d+) ([01])([01]) (%\d+) (.*):(\d+)\.(\d+) (.*)$")
# Accepted target forms: %N, sess:win.pane, sess (tmux forbids ':' and '.' in session names).
_TARGET = re.compile(r"%\d+|[^%:][^:]*(:\d+\.\d+)?")


def run(args: tuple[str, ...], *, socket_name: str | None = None, socket_path: str | None = None,
        tmux_bin: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """One tmux command as a process of its own, on the server -L socket_name or -S socket_path (or the
    default), within timeout seconds, reading no stdin; text out, undecodable bytes replaced. Raises
    OSError or subprocess.SubprocessError (tmux missing, timed out); the exit status is the caller's."""
    if socket_name and socket_path:
        raise ValueError("pass socket_name or socket_path, not both")
    argv = [tmux_bin or TMUX_BIN]
    if socket_name:
        argv += ["-L", socket_name]
    elif socket_path:
        argv += ["-S", socket_path]
    return subprocess.run([*argv, *args], capture_output=True, text=True, errors="replace",
                          timeout=timeout or TMUX_TIMEOUT, stdin=subprocess.DEVNULL)


def tmux_targets(targets: list[str], socket_name: str | None = None, socket_path: str | None = None,
                 tmux_bin: str | None = None, timeout: float | None = None) -> dict[str, str]:
    """Return "seen", "missing" or "unknown" per target (%N, sess:win.pane, sess) via one tmux call."""
    return {t: state for t, (state, _) in tmux_panes(targets, socket_name, socket_path, tmux_bin, timeout).items()}


def tmux_panes(targets: list[str], socket_name: str | None = None, socket_path: str | None = None,
               tmux_bin: str | None = None, timeout: float | None = None) -> dict[str, tuple[str, str | None]]:
    """Per target (%N, sess:win.pane, sess): ("seen", identity) or ("missing"|"unknown", None), one tmux call.

    The identity is "SERVER_PID SERVER_START PANE_ID PANE_PID": the same %N in a restarted tmux
    server, or in a pane that was respawned, is another pane.
    """
    try:
        proc = run(("list-panes", "-a", "-F", _PANE_FORMAT), socket_name=socket_name, socket_path=socket_path,
                   tmux_bin=tmux_bin, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("tmux probe failed: %s", exc)
        return {t: ("unknown", None) for t in targets}
    if proc.returncode != 0:
        err = proc.stderr
        # A socket we may not open says nothing about whether the server exists.
        if "no server running" in err or ("error connecting" in err and "Permission denied" not in err):
            return {t: ("missing", None) for t in targets}
        log.warning("tmux probe exited %d: %s", proc.returncode, err.strip())
        return {t: ("unknown", None) for t in targets}
    seen: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = _PANE_LINE.match(line)
        # Session names may contain spaces; both copies must agree to trust the split.
        if m and m.group(7) == m.group(10):
            pid, start, pane_pid, window_active, pane_active, pane_id, session = m.group(1, 2, 3, 4, 5, 6, 7)
            identity = f"{pid} {start} {pane_id} {pane_pid}"
            seen[pane_id] = seen[f"{session}:{m.group(8)}.{m.group(9)}"] = identity
            if window_active == pane_active == "1":
                seen[session] = identity  # a session name means its active pane
    # Other syntax (window names, "sess:win", "=sess") cannot be resolved exactly here.
    return {t: (("seen", seen[t]) if t in seen else ("missing", None)) if _TARGET.fullmatch(t) else ("unknown", None)
            for t in targets}
