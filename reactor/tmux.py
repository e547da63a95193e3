"""Type prompts into tmux panes safely: sanitised, literal, verified, then submitted."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from reactor.errors import PsHealthError
from reactor.pane import EMPTY, FOREIGN, OURS, STALE, UNSEEN, Profile, accepted, classify, describe, \
    foreground_argv, squash
from reactor.tmux_control import ControlClient, ControlLost, quote

log = logging.getLogger(__name__)

_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_LINE_BREAKS = re.compile(r"[\t\n\r]")
# C0, DEL, C1, and lone surrogates (they cannot be encoded into tmux's argv).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SPACE_RUNS = re.compile(r" {2,}")

# tmux packs a client's argv into one message of at most 16 KiB ("command too long"); the text
# travels quoted inside the guarded command, where a ' takes four bytes.
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
    return _SPACE_RUNS.sub(" ", text).strip()


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


@dataclass
class Trust:
    """What must hold before the reactor types into a pane, from SQL with each prompt.

    identity: the pane the session registered, as first seen (None: not seen yet, then bind(seen)
    records it and returns the identity the session is bound to); programs: the accepted agent
    programs; profiles: how their input lines look ('*' the default); marker_pattern: how every
    prompt's text starts; claimed_before: an earlier claim of this prompt may have typed it.
    """

    identity: str | None
    programs: tuple[str, ...]
    profiles: dict
    marker_pattern: str | None = None
    bind: Callable[[str], str | None] | None = None
    claimed_before: bool = False


# display-message shows these fields (all set by tmux, none by the pane's program) before the screen.
_LOOK_FORMAT = "#{pid} #{start_time} #{pane_id} #{pane_pid} #{pane_in_mode} #{pane_dead} #{pane_mode}"
_LOOK_LINE = re.compile(r"(\d+ \d+ %\d+ (\d+)) ([01]) ([01]) ?(\S*)")
# Keys are sent only if the pane still shows this when tmux runs them (same server, same pane, no mode).
_GUARD = "#{==:#{pid} #{start_time} #{pane_id} #{pane_pid} #{pane_in_mode},%s 0}"
_REFUSED = "ps-health:refused"
# A prompt right after another in the same pane looks this often until the agent took the one before.
_SETTLE_POLL = 0.005
# A prompt claimed before is looked for this far back in the pane's history before it is typed.
_HISTORY_LINES = 500


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
        self._submitted: dict[str, str] = {}  # pane -> the line last submitted there (squashed)
        if control:
            path = socket_path or _socket_path(socket_name)
            self._control = ControlClient([shutil.which("tmux") or "tmux", "-S", path], path)

    def close(self) -> None:
        """End the control-mode client, if one is attached."""
        if self._control is not None:
            self._control.close()

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
        return Look(identity=match.group(1), pane_pid=int(match.group(2)), in_mode=match.group(3) == "1",
                    dead=match.group(4) == "1", mode=match.group(5), screen="\n".join(screen))

    def send_keys(self, target: str, identity: str, *keys: str, literal: bool = False) -> None:
        """Send keys only while the pane is `identity` and in no mode, checked by tmux as it sends them.

        Raise PaneRefused when it no longer is (nothing sent), TmuxError on other failures.
        """
        send = "send-keys -t " + quote(target) + (" -l --" if literal else "") + "".join(" " + quote(k) for k in keys)
        lines = self._run(("if-shell", "-F", "-t", target, _GUARD % identity, send,
                           f"display-message -p {_REFUSED}"), keys_to=target)
        if _REFUSED in lines:
            raise PaneRefused(f"tmux send-keys: pane {target} changed before the keys were sent")

    def send_literal(self, target: str, identity: str, text: str, clean: bool = False) -> None:
        """Type sanitise(text) into the pane without submitting it (clean: text is sanitised); raise TmuxError."""
        for n, piece in enumerate(_chunks(text if clean else sanitise(text))):
            try:
                self.send_keys(target, identity, piece, literal=True)
            except TmuxError as exc:
                exc.partial = exc.partial or n > 0
                raise

    def deliver(self, target: str, text: str, submit_delay: float, attempts: int = 3, *,
                trust: Trust) -> Outcome:
        """Type text into the pane if trust holds, wait submit_delay, check it is on screen, press Enter.

        Before every keystroke the pane must be the one the session registered, run an accepted agent
        program, be in no mode, and its input line must hold nothing the reactor did not type;
        otherwise nothing is typed and the outcome says why. Never raises.
        """
        start = time.monotonic()
        attempts = max(1, attempts)
        clean = sanitise(text)
        if not clean:
            return Outcome("failed", "nothing left to send after sanitising", 0.0)
        tail = squash(clean)[-_TAIL_CHARS:]
        if not tail:  # text made only of frame characters: nothing to recognise on screen
            return Outcome("failed", "text has nothing visible to verify", 0.0)
        try:
            marker = re.compile(trust.marker_pattern) if trust.marker_pattern else None
        except re.error as exc:
            return Outcome("failed", f"bad marker pattern: {exc}", 0.0)
        try:
            return self._deliver(target, clean, tail, marker, submit_delay, attempts, trust, start)
        except PaneRefused:
            return self._refused(target, trust, start)
        except TmuxError as exc:
            return self._error(exc, start)

    def _deliver(self, target: str, clean: str, tail: str, marker: re.Pattern | None, submit_delay: float,
                 attempts: int, trust: Trust, start: float) -> Outcome:
        look = self.look(target)
        checked = self._checked(target, look, trust, start)
        if isinstance(checked, Outcome):
            return checked
        profile = checked
        look = self._taken(target, look, profile, submit_delay)
        held = classify(profile.input_line(look.screen), clean, marker)
        if held == OURS:
            # Typed before and never submitted (by a reactor that was stopped): submit it, once.
            self.send_keys(target, trust.identity, "Enter")
            self._submitted[target] = squash(clean)
            return Outcome("delivered", "submitted the text typed by an earlier attempt", _ms_since(start))
        if held == STALE:
            if not profile.clear_keys:
                return _deferred(f"the input line holds an earlier prompt and agent profile {profile.name!r} "
                                 "has no keys to clear it", start)
            self.send_keys(target, trust.identity, *profile.clear_keys)
            deadline = time.monotonic() + max(submit_delay, _SETTLE_POLL)
            while True:  # until the agent shows the line cleared
                look = self.look(target)
                checked = self._checked(target, look, trust, start)
                if isinstance(checked, Outcome):
                    return checked
                held = classify(profile.input_line(look.screen), clean, marker)
                if held == EMPTY or time.monotonic() >= deadline:
                    break
                time.sleep(_SETTLE_POLL)
        if held != EMPTY:
            return _deferred({STALE: "could not clear an earlier prompt from the input line",
                              FOREIGN: "the input line holds text the reactor did not type",
                              UNSEEN: f"no input line recognised on screen (agent profile {profile.name!r})",
                              }[held], start)
        if trust.claimed_before and self._submitted_before(target, clean, marker, profile):
            # A reactor that was stopped between Enter and recording it: typing it again would repeat it.
            return Outcome("delivered", "already submitted by an earlier attempt (its marker is on screen); "
                                        "not typed again", _ms_since(start))
        self.send_literal(target, trust.identity, clean, clean=True)
        latency = _ms_since(start)
        full, before = squash(clean), None
        for attempt in range(1, attempts + 1):
            # Retries only look again: typing the text twice would be worse than failing.
            time.sleep(submit_delay)
            # The pane's identity and mode are checked by tmux as it sends the Enter; its program here.
            screen = self._screen(target)
            agent = self._agent(look.pane_pid, trust, start)
            if isinstance(agent, Outcome):
                return replace(agent, detail=f"{agent.detail}; typed, not submitted", latency_ms=latency)
            line = profile.input_line(screen)
            typed = squash(line) if line is not None else None
            if typed != full:  # not the whole prompt on the input line: look for its end on the screen
                if typed and not full.startswith(typed):
                    return Outcome("deferred", "the input line holds text the reactor did not type beside the "
                                               "prompt; typed, not submitted", latency)
                before = squash(look.screen) if before is None else before  # the screen before the keys
                after = squash(screen)
                if not (after.count(tail) > before.count(tail) or (tail in after and after != before)):
                    continue
            self.send_keys(target, trust.identity, "Enter")
            log.debug("delivered %d chars to %s (attempt %d)", len(clean), target, attempt)
            self._submitted[target] = full
            return Outcome("delivered", f"submitted on attempt {attempt}", latency)
        log.warning("prompt to %s failed: text not visible in pane after %d attempts", target, attempts)
        return Outcome("failed", f"text not visible in pane after {attempts} attempts", latency)

    def _submitted_before(self, target: str, clean: str, marker: re.Pattern | None, profile: Profile) -> bool:
        """Whether this prompt's marker shows above the agent's input line (screen and recent scrollback)."""
        own = marker.match(clean) if marker is not None else None
        if own is None:
            return False
        lines = self._run(("capture-pane", "-p", "-J", "-S", f"-{_HISTORY_LINES}", "-t", target))
        last = max((i for i, line in enumerate(lines) if profile.input_pattern.search(line)), default=len(lines))
        return any(own.group(0) in line for line in lines[:last])

    def _taken(self, target: str, look: Look, profile: Profile, limit: float) -> Look:
        """A look once the agent has taken the line the reactor submitted last in this pane (at most `limit`
        later): a prompt that follows at once must not find the one before still on the input line."""
        last = self._submitted.pop(target, None)
        deadline = time.monotonic() + limit
        while last is not None and time.monotonic() < deadline:
            line = profile.input_line(look.screen)
            if line is None or squash(line) != last:
                break
            time.sleep(_SETTLE_POLL)
            look = self.look(target)
        return look

    def _checked(self, target: str, look: Look, trust: Trust, start: float) -> Profile | Outcome:
        """The agent profile to read the pane with if it may be typed into; else the outcome saying why not."""
        if trust.identity is None:
            try:
                trust.identity = trust.bind(look.identity) if trust.bind is not None else look.identity
            except Exception as exc:  # the database is away: look again later
                return _deferred(f"could not record the pane's identity: {exc}", start)
            if trust.identity is None:
                return Outcome("target_changed", f"pane {target} ({look.identity}) is not this session's pane "
                                                 "(another project's, or the session moved)", _ms_since(start))
        if look.identity != trust.identity:
            return Outcome("target_changed", f"pane {target} is not the pane the session registered "
                                             f"({trust.identity}, now {look.identity}): its tmux server "
                                             "restarted or the pane was replaced", _ms_since(start))
        if look.dead:
            return _deferred("the pane's program has exited", start)
        if look.in_mode:
            return _deferred(f"the pane is in {look.mode or 'a mode'}", start)
        return self._agent(look.pane_pid, trust, start)

    @staticmethod
    def _agent(pane_pid: int, trust: Trust, start: float) -> Profile | Outcome:
        """The profile of the accepted agent program in the pane's foreground; else the outcome saying why not."""
        argv = foreground_argv(pane_pid)
        if argv is None:
            return _deferred("cannot tell the pane's foreground program", start)
        program = accepted(argv, trust.programs)
        if program is None:
            return _deferred(f"the pane runs {describe(argv)}, not an accepted agent program "
                             f"({', '.join(trust.programs) or 'none accepted'})", start)
        data = trust.profiles.get(program) or trust.profiles.get("*")
        if data is None:
            return _deferred(f"no agent profile for {program!r} and no generic '*' profile", start)
        try:
            return Profile.parse(program if program in trust.profiles else "*", data)
        except ValueError as exc:
            return _deferred(str(exc), start)

    def _refused(self, target: str, trust: Trust, start: float) -> Outcome:
        """Keys were refused by the guard: say why from a fresh look (nothing, or only part, was sent)."""
        try:
            look = self.look(target)
        except TmuxError as exc:
            return self._error(exc, start)
        checked = self._checked(target, look, trust, start)
        if isinstance(checked, Outcome):
            return checked
        return _deferred("the pane changed while the reactor typed", start)

    @staticmethod
    def _error(exc: TmuxError, start: float, latency: float | None = None) -> Outcome:
        """Map a tmux failure to target_missing or failed, keeping tmux's message."""
        ms = latency if latency is not None else _ms_since(start)
        if exc.missing:
            return Outcome("target_missing", str(exc), ms)
        log.warning("tmux error: %s", exc)
        return Outcome("failed", str(exc), ms)


def _deferred(reason: str, start: float) -> Outcome:
    return Outcome("deferred", reason, _ms_since(start))


def _socket_path(name: str | None) -> str:
    """The socket a tmux client uses for -L NAME, or without -L/-S (inside tmux: $TMUX's)."""
    if name is None and os.environ.get("TMUX"):
        return os.environ["TMUX"].split(",")[0]
    folder = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(folder, f"tmux-{os.getuid()}", name or "default")


def _ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000.0
