"""Type a prompt into a pane only while it is fit for it: the checks before every keystroke, then verified."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from reactor.tmux.client import Look, Outcome, PaneRefused, Tmux, TmuxError, sanitise
from reactor.tmux.pane import (
    EMPTY,
    FOREIGN,
    OURS,
    STALE,
    UNSEEN,
    Profile,
    accepted,
    classify,
    describe,
    foreground,
    squash,
    terminal_child,
)

log = logging.getLogger(__name__)

# Compare this many trailing characters: the pane shows only the end of a long text.
_TAIL_CHARS = 30
# How long an agent may take to show its input line again after a submit, before the next prompt of
# the same pane is deferred (and tried again after prompt_defer_delay).
_REDRAW_LIMIT = 2.0
# How long the agent may take to show it took an Enter (a busy machine slows a node CLI's redraw for seconds)
# before Enter is pressed a second time, on a fresh look (see Typist._enter).
_TAKE_LIMIT = 4.0
# Enter is pressed again on text still on the input line only this long after the Enter before it in the pane.
_ENTER_SETTLE = _TAKE_LIMIT + _REDRAW_LIMIT
# A prompt right after another in the same pane looks this often until the agent took the one before.
_SETTLE_POLL = 0.005
# A prompt claimed before is looked for this far back in the pane's history before it is typed.
_HISTORY_LINES = 500
# A row of an input box's border: box-drawing and block characters only (─, ━, ▀, ▄, ╰──╯, ...).
_RULE = re.compile("[\u2500-\u259f]{10,}")
# The last look before Enter starts about as long before the submit delay is over as such a look and its checks
# took of late (so Enter is not late; at least _LOOK_AHEAD, at most _LOOK_AHEAD_MAX and a quarter of the delay),
# and no earlier: what it saw is what Enter answers. A look takes 0.4 ms on a quiet machine, several times that
# on a busy one.
_LOOK_AHEAD = 0.001
_LOOK_AHEAD_MAX = 0.01
# The last part of a wait before a keystroke is spent looking at the clock, not asleep (see _pause_until).
_SPIN = 0.0003


@dataclass
class Trust:
    """What must hold before the reactor types into a pane, from SQL with each prompt.

    identity: the pane the session registered, as first seen (None: not seen yet, then bind(seen)
    records it and returns the identity the session is bound to, None if the pane is not the session's,
    '' if it cannot be bound before a probe round); programs: the accepted agent
    programs; profiles: how their input lines look ('*' the default); marker_pattern: how every
    prompt's text starts; claimed_before: an earlier claim of this prompt may have typed it.
    """

    identity: str | None
    programs: tuple[str, ...]
    profiles: dict
    marker_pattern: str | None = None
    bind: Callable[[str], str | None] | None = None
    claimed_before: bool = False
    reset: bool = False


class Typist:
    """Delivers prompts through one tmux server; remembers the line it last submitted in each pane, and
    the text it pasted there while the agent shows it collapsed."""

    def __init__(self, tmux: Tmux):
        self.tmux = tmux
        self._submitted: dict[str, str] = {}  # pane -> the input line as it was submitted there (squashed)
        self._left: dict[str, str] = {}  # pane -> the text (squashed) typed or pasted there and not submitted
        self._entered: dict[str, float] = {}  # pane -> when this typist last pressed Enter there (monotonic)
        self._look_took = _LOOK_AHEAD  # how long the last look before an Enter took, smoothed (see look_ahead)

    def look_ahead(self, submit_delay: float) -> float:
        """How long before the end of the submit delay the last look before Enter starts."""
        return min(submit_delay / 4, max(_LOOK_AHEAD, self._look_took))  # (_look_took <= _LOOK_AHEAD_MAX)

    def _looked(self, took: float) -> None:
        # (a longer look raises it at once, so the next Enter is not late again; shorter ones lower it a quarter of
        # the way each; pane threads share it: a float, set whole)
        took = min(took, _LOOK_AHEAD_MAX)
        self._look_took = took if took > self._look_took else 0.75 * self._look_took + 0.25 * took

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
        if not clean and not trust.reset:
            return Outcome("failed", "nothing left to send after sanitising", 0.0)
        try:
            marker = re.compile(trust.marker_pattern) if trust.marker_pattern else None
        except re.error as exc:
            return Outcome("failed", f"bad marker pattern: {exc}", 0.0)
        try:
            return self._deliver(target, clean, marker, submit_delay, attempts, trust, start)
        except PaneRefused:
            return self._refused(target, trust, start)
        except TmuxError as exc:
            return self._error(exc, start)

    def _deliver(self, target: str, clean: str, marker: re.Pattern | None, submit_delay: float,
                 attempts: int, trust: Trust, start: float) -> Outcome:
        look = self.tmux.look(target)
        checked = self._checked(target, look, trust, start)
        if isinstance(checked, Outcome):
            return checked
        profile = checked
        note = ""
        if not clean:  # the handoff cycle's reset step: the reset command of the agent in the pane
            if not profile.reset_command:
                return _deferred(f"agent profile {profile.name!r} has no reset command (set reset_command)", start)
            clean, note = sanitise(profile.reset_command), f" ({profile.reset_command}, the reset command of " \
                                                              f"agent profile {profile.name!r})"
        tail = squash(clean)[-_TAIL_CHARS:]
        if not tail:  # text made only of frame characters: nothing to recognise on screen
            return Outcome("failed", "text has nothing visible to verify", 0.0)
        taken = self._taken(target, look, profile, submit_delay)
        if taken is not look:  # looked again while the agent took the line before: all of it holds again
            checked = self._checked(target, taken, trust, start)
            if isinstance(checked, Outcome):
                return checked
            look, profile = taken, checked
        held = self._held(target, profile.input_line(look.screen), clean, marker, profile)
        if held == EMPTY and draft_below(profile, look.screen):
            held = FOREIGN  # the user's draft, on the rows under an empty first line
        if held == EMPTY and self._left.get(target) == squash(clean):
            # This very text was typed here and is not shown: the agent may not have drawn it yet.
            look, held = self._drawn(target, look, trust, clean, marker, profile, start)
            if isinstance(look, Outcome):
                return look
        blocked = _screen_refusal(profile, look.screen)
        if blocked:
            return _deferred(f"{blocked}; nothing typed", start)
        if held == OURS:
            # Typed before and never submitted (by a reactor that was stopped, or an Enter the agent did not
            # take): submit it, once. An Enter pressed here a moment ago may still be on its way through a slow
            # agent, which may have opened a dialog with it: wait until it has had time to show, look again.
            settle = self._entered.get(target, -_ENTER_SETTLE) + _ENTER_SETTLE - time.monotonic()
            if settle > 0:
                time.sleep(settle)
                return self._deliver(target, clean, marker, submit_delay, attempts, trust, start)
            shown = squash(profile.input_line(look.screen) or clean)
            missed = self._enter(target, trust, profile, shown, _Before.of(profile, look.screen))
            if missed:
                return Outcome("failed", f"{missed}{note}", _ms_since(start))
            self._submitted[target] = shown
            self._left.pop(target, None)
            return Outcome("delivered", f"submitted the text typed by an earlier attempt{note}", _ms_since(start))
        if held == STALE:
            if not profile.clear_keys:
                return _deferred(f"the input line holds an earlier prompt and agent profile {profile.name!r} "
                                 "has no keys to clear it", start)
            self.tmux.send_keys(target, trust.identity, *profile.clear_keys)
            self._left.pop(target, None)
            deadline = time.monotonic() + max(submit_delay, _SETTLE_POLL)
            while True:  # until the agent shows the line cleared
                look = self.tmux.look(target)
                checked = self._checked(target, look, trust, start)
                if isinstance(checked, Outcome):
                    return checked
                held = self._held(target, profile.input_line(look.screen), clean, marker, profile)
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
        full = squash(clean)
        pasting = profile.pastes(clean)
        self._left[target] = full
        typing = time.monotonic()
        if pasting:
            # Typed in one burst the agent would collapse or split it: one bracketed paste arrives whole.
            self.tmux.paste(target, trust.identity, clean)
            note += f"; pasted ({len(clean.encode('utf-8'))} bytes, bracketed)"
        else:
            self.tmux.send_literal(target, trust.identity, clean, clean=True)
        latency = _ms_since(start)
        # Enter goes out submit_delay after the text went to tmux (the moment its last command was written,
        # else now), never before; the look before it is taken in the last moments of the delay (at most
        # _LOOK_AHEAD before its end), so it does not lengthen it. A retry looks again a whole delay after the
        # look before.
        went = self.tmux.last_write()
        due = (went if went is not None and went >= typing else time.monotonic()) + submit_delay
        before = None
        for attempt in range(1, attempts + 1):
            # Retries only look again: typing the text twice would be worse than failing.
            looking = _pause_until(due - self.look_ahead(submit_delay))
            # The pane's identity and mode are checked by tmux as it sends the Enter; its program here.
            screen = self.tmux._screen(target)
            agent = self._agent(look.pane_pid, trust, start)
            seen = time.monotonic()
            if isinstance(agent, Outcome):
                return replace(agent, detail=f"{agent.detail}; typed, not submitted", latency_ms=latency)
            if profile.dialog_open(screen):
                # Enter would answer it (its first option is usually "Yes").
                return Outcome("deferred", "a dialog, menu or selection list opened while the reactor typed; "
                                           "Enter not pressed", latency)
            line = profile.input_line(screen)
            if not (pasting and profile.collapsed(line)):  # a collapsed paste shown: the text arrived
                typed = squash(line) if line is not None else None
                if typed != full:  # not the whole prompt on the input line: look for its end on the screen
                    if typed and not full.startswith(typed):
                        return Outcome("deferred", "the input line holds text the reactor did not type beside "
                                                   "the prompt; typed, not submitted", latency)
                    before = squash(look.screen) if before is None else before  # the screen before the keys
                    after = squash(screen)
                    if not (after.count(tail) > before.count(tail) or (tail in after and after != before)):
                        due = seen + submit_delay
                        continue
            shown = squash(line) if line else full
            was = _Before.of(profile, screen)  # (read before the pause: Enter goes out the moment it ends)
            self._looked(time.monotonic() - looking)
            _pause_until(due)
            missed = self._enter(target, trust, profile, shown, was)
            if missed:
                return Outcome("failed", f"{missed}{note}", latency)
            log.debug("delivered %d chars to %s (attempt %d)", len(clean), target, attempt)
            self._submitted[target] = shown
            self._left.pop(target, None)
            return Outcome("delivered", f"submitted on attempt {attempt}{note}", latency)
        log.warning("prompt to %s failed: text not visible in pane after %d attempts", target, attempts)
        return Outcome("failed", f"text not visible in pane after {attempts} attempts{note}", latency)

    def _enter(self, target: str, trust: Trust, profile: Profile, shown: str, was: _Before) -> str | None:
        """Press Enter and see the agent take the line (`shown`, squashed, on the screen `was`). None when taken,
        else why not: the text stays on the input line, remembered as typed here, for the next attempt. Taken: the
        line changed or went, the agent is busy or shows a dialog, or it printed lines under the input line (a
        footer that only changes in place, a clock or a counter, says nothing).

        Never a second Enter blind. An agent that read the text and the Enter in one burst takes the Enter for a
        newline (Codex CLI and Gemini CLI on a busy machine); one that is only slow to redraw may have opened a
        dialog with it, and a second Enter would answer it. So a second Enter is pressed only after _TAKE_LIMIT
        of the text shown unchanged, on a fresh look at which every check before typing holds again and the
        agent shows no dialog and no running turn."""
        for press in (1, 2):
            if press == 2:
                look = self.tmux.look(target)
                checked = self._checked(target, look, trust, time.monotonic())
                if isinstance(checked, Outcome):
                    return f"Enter pressed once and not again: {checked.detail}"
                if self._took(checked, look.screen, shown, was):
                    return None
            self.tmux.send_keys(target, trust.identity, "Enter")
            self._entered[target] = time.monotonic()
            if self._taken_within(target, profile, shown, was, _TAKE_LIMIT):
                return None
        return (f"Enter pressed twice, {_TAKE_LIMIT:g} s apart, and the text is still on the agent's input line; "
                "the next attempt looks again")

    def _taken_within(self, target: str, profile: Profile, shown: str, was: _Before, limit: float) -> bool:
        """Whether the agent shows it took the line within `limit` (True also if the pane can no longer be seen)."""
        pressed = time.monotonic()
        pause = _SETTLE_POLL / 10  # most agents redraw within a millisecond or two: look often at first
        while True:
            try:
                screen = self.tmux._screen(target)
            except TmuxError:
                return True  # the Enter went out, and the pane cannot be looked at now (its server went away)
            if self._took(profile, screen, shown, was):
                return True
            if time.monotonic() - pressed >= limit:
                return False
            time.sleep(pause)
            # (every 10 ms at most while an agent usually redraws, then every 50 ms: a slow agent on a busy machine)
            pause = min(pause * 2, _SETTLE_POLL * 2 if time.monotonic() - pressed < _REDRAW_LIMIT else 0.05)

    @staticmethod
    def _took(profile: Profile, screen: str, shown: str, was: _Before) -> bool:
        """The screen shows the agent took the line `shown` (see _enter): it changed since the screen before Enter
        (`was`); a running turn already shown then (a prompt sent anyway to a busy agent) is no sign."""
        line = profile.input_line(screen)
        return line is None or squash(line) != shown or len(_below(profile, screen)) > was.below \
            or any(now and not then for now, then in zip(_signs(profile, screen), was.signs, strict=True))

    def _held(self, target: str, line: str | None, clean: str, marker: re.Pattern | None, profile: Profile) -> str:
        """What the input line holds; a collapsed paste is ours only if this typist pasted this very text. A
        prompt's text with anything added or changed is not ours to clear: this prompt's own marker with other
        text after it, or the marker of the prompt this typist left there with a line that differs from it.
        Prompts run together on one line (typed while the one before was still being drawn) are cleared."""
        left = self._left.get(target)
        if profile.collapsed(line):
            if left is None:
                return FOREIGN  # somebody's paste: what it holds cannot be read
            return OURS if left == squash(clean) else STALE
        held = classify(line, clean, marker)
        if held == STALE and len(marker.findall(line)) == 1:  # (prompts run together on the line: all ours)
            # A line that is only the start of the text is the text wrapped in a box the line shows the first
            # row of, or still being drawn: it is the prompt's, as typed.
            typed, first = squash(line), marker.match(line).group(0)
            own = marker.match(clean)
            if own is not None and first == own.group(0) and not squash(clean).startswith(typed):
                return FOREIGN  # this very prompt, and text somebody typed beside it
            if left is not None and left.startswith(squash(first)) and not left.startswith(typed):
                return FOREIGN  # the prompt this typist left here, and text somebody typed beside it
        return held

    def _drawn(self, target: str, look: Look, trust: Trust, clean: str, marker: re.Pattern | None,
               profile: Profile, start: float) -> tuple[Look | Outcome, str]:
        """Look again until the input line shows something, at most _REDRAW_LIMIT: (look, what it holds). Still
        empty then, the text typed before was lost (and may be typed again)."""
        deadline = time.monotonic() + _REDRAW_LIMIT
        held = EMPTY
        while held == EMPTY and time.monotonic() < deadline:
            time.sleep(_SETTLE_POLL * 10)
            look = self.tmux.look(target)
            checked = self._checked(target, look, trust, start)
            if isinstance(checked, Outcome):
                return checked, held
            held = self._held(target, profile.input_line(look.screen), clean, marker, profile)
        if held == EMPTY:
            self._left.pop(target, None)
        return look, held

    def profile_at(self, target: str, trust: Trust | None) -> tuple[Look, Profile | None] | None:
        """A look at the pane and the profile of the accepted agent in it (None: not known); None on errors."""
        try:
            look = self.tmux.look(target)
        except TmuxError:
            return None
        if trust is None:
            return look, None
        profile = self._agent(look.pane_pid, trust, time.monotonic())
        return look, (profile if isinstance(profile, Profile) else None)

    def _submitted_before(self, target: str, clean: str, marker: re.Pattern | None, profile: Profile) -> bool:
        """Whether this prompt's marker shows above the agent's input line (screen and recent scrollback)."""
        own = marker.match(clean) if marker is not None else None
        if own is None:
            return False
        lines = self.tmux._run(("capture-pane", "-p", "-J", "-S", f"-{_HISTORY_LINES}", "-t", target))
        row = profile.input_row(lines)
        return any(own.group(0) in line for line in lines[:len(lines) if row is None else row])

    def _taken(self, target: str, look: Look, profile: Profile, limit: float) -> Look:
        """A look once the agent has taken the line the reactor submitted last in this pane (at most `limit`
        later): a prompt that follows at once must not find the one before still on the input line."""
        last = self._submitted.pop(target, None)
        deadline = time.monotonic() + max(limit, _REDRAW_LIMIT)
        while last is not None and time.monotonic() < deadline:
            line = profile.input_line(look.screen)
            # gone (the agent is redrawing) or still the one submitted: not taken yet
            if line is not None and squash(line) != last:
                break
            time.sleep(_SETTLE_POLL)
            look = self.tmux.look(target)
        return look

    def _checked(self, target: str, look: Look, trust: Trust, start: float) -> Profile | Outcome:
        """The agent profile to read the pane with if it may be typed into; else the outcome saying why not."""
        if not look.named(target):
            # tmux found a pane by a name that is not exactly one of its own (a session-name prefix, a window
            # name): the probe, which resolves exact names only, cannot tell whose pane that is
            return Outcome("target_missing", f"no pane is named {target} exactly (tmux would take {look.names[0]}, "
                                             f"{look.names[1]}, by a partial name)", _ms_since(start))
        if trust.identity is None:
            try:
                trust.identity = trust.bind(look.identity) if trust.bind is not None else look.identity
            except Exception as exc:  # the database is away: look again later
                return _deferred(f"could not record the pane's identity: {exc}", start)
            if trust.identity == "":
                trust.identity = None
                return _deferred("another project's session on this host names a pane not identified yet (it may "
                                 "be this one): the pane is bound at the next probe round", start)
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
        if look.synchronized:
            return _deferred("synchronize-panes is on for the pane: tmux would type the keys into every pane of "
                             "its window", start)
        return self._agent(look.pane_pid, trust, start)

    @staticmethod
    def _agent(pane_pid: int, trust: Trust, start: float) -> Profile | Outcome:
        """The profile of the accepted agent program in the pane's foreground; else the outcome saying why not."""
        found = foreground(pane_pid)
        if found is None:
            return _deferred("cannot tell the pane's foreground program", start)
        leader, argv = found
        program = accepted(argv, trust.programs, trust.profiles)
        if program is None:
            return _deferred(f"the pane runs {describe(argv)}, not an accepted agent program "
                             f"({', '.join(trust.programs) or 'none accepted'})", start)
        child = terminal_child(leader, lambda args: accepted(args, trust.programs, trust.profiles) is not None)
        if child is not None:
            return _deferred(f"{describe(child)}, started by the agent, reads the pane's terminal (a pager, an "
                             "editor or a shell would take the keys as its own)", start)
        data = trust.profiles.get(program) or trust.profiles.get("*")
        if data is None:
            return _deferred(f"no agent profile for {program!r} and no generic '*' profile", start)
        try:
            return Profile.of(program if program in trust.profiles else "*", data)
        except ValueError as exc:
            return _deferred(str(exc), start)

    def _refused(self, target: str, trust: Trust, start: float) -> Outcome:
        """Keys were refused by the guard: say why from a fresh look (nothing, or only part, was sent)."""
        try:
            look = self.tmux.look(target)
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


@dataclass(frozen=True)
class _Before:
    """The screen before Enter, as _took compares with it: lines under the input line, and _signs."""

    below: int
    signs: tuple[bool, bool, bool]

    @classmethod
    def of(cls, profile: Profile, screen: str) -> _Before:
        return cls(len(_below(profile, screen)), _signs(profile, screen))


def _signs(profile: Profile, screen: str) -> tuple[bool, bool, bool]:
    """What shows the agent is not at its input line: the box hidden, a running turn, a dialog."""
    return profile.box_hidden(screen), profile.is_busy(screen), profile.dialog_open(screen)


def _below(profile: Profile, screen: str) -> list[str]:
    """The non-blank lines under the input line (an agent's footer; or what a program printed after it)."""
    lines = screen.splitlines()
    row = profile.input_row(lines)
    return [line.rstrip() for line in lines[len(lines) if row is None else row + 1:] if line.strip()]


def draft_below(profile: Profile, screen: str) -> bool:
    """The input box holds text under an empty input line: a draft that starts with a line break. Known only for a
    box with a bottom border (a rule of box-drawing characters) under the input line."""
    if profile.input_line(screen):
        return False
    held = False
    for line in _below(profile, screen):
        if _RULE.fullmatch(line.strip()):
            return held
        held = held or bool(line.strip(" \u2502\u2503"))  # (a side border is not text)
    return False


def _screen_refusal(profile: Profile, screen: str) -> str | None:
    """Why the agent's screen takes no typing now (a dialog, or no input box shown), or None."""
    if profile.dialog_open(screen):
        return f"a dialog, menu or selection list is open (agent profile {profile.name!r})"
    if profile.box_hidden(screen):
        return f"the agent does not show its input box (agent profile {profile.name!r})"
    return None


def _pause_until(moment: float) -> float:
    """Sleep until the monotonic clock reaches moment (no sleep if it has); return the clock then. A sleep ends late
    by the time its thread takes to wake (0.1 ms and more on a VM): the last _SPIN of the wait is spent looking at
    the clock."""
    left = moment - time.monotonic()
    if left > _SPIN:
        time.sleep(left - _SPIN)
    while (now := time.monotonic()) < moment:
        pass
    return now


def _deferred(reason: str, start: float) -> Outcome:
    return Outcome("deferred", reason, _ms_since(start))


def _ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000.0
