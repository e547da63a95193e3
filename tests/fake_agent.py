"""Test helper run in a tmux pane: an agent CLI with the screens that matter to the reactor.

Usage: fake_agent.py FILE [--dialog] [--busy SECONDS] [--collapse N] [--lag SECONDS] [--enter-window SECONDS]
                     [--submit-lag SECONDS] [--ask-after-submit] [--clock] [--wrap N] [--draft TEXT]

It draws a full screen like an agent CLI: a title, a status line, and the input box "> text".
Every byte read is appended to FILE and each submitted line (Enter) to FILE.lines; Ctrl-U
empties the line. Its agent profile (tests/test_agent_profiles.py) reads these screens:
  --dialog      start with a permission dialog open ("❯ 1. Yes / 2. No", "Esc to cancel") and no
                input box; 1, y or Enter approves (FILE.approved is written), Esc alone dismisses
                it; any other byte is taken by the dialog and lost, as a real one takes it.
  --busy S      a turn runs for S seconds after start: a status line that never changes
                ("✻ Working… (esc to interrupt)"); bytes read meanwhile go to FILE.busy too.
  --collapse N  bracketed paste is on; a paste, or one burst of typed input, over N characters
                shows as "[Pasted text #K]" (its text is kept and submitted by Enter).
  --lag S       the screen is redrawn S seconds after the input changed (a slow agent).
  --enter-window S  an Enter within S seconds of the text before it is taken as part of a paste burst
                (a newline, not a submit), as Codex CLI and Gemini CLI may when they read both at once.
  --submit-lag S  the screen is redrawn S seconds after a submit (typing is drawn at once).
  --ask-after-submit  a submitted line starts a turn that asks for permission: the dialog opens.
  --clock       a line under the input box that changes every 50 ms (a timer or token counter).
  --wrap N      the input box wraps its text every N characters onto rows of its own, as Claude Code's does.
  --draft TEXT  the input box, closed by a rule under it, holds a draft whose first line is empty: TEXT on the
                row under the input line (until Ctrl-U), as Claude Code and Gemini CLI show one.
FILE exists once the tty is set up: its existence means "ready". Exits only on a signal.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from recorder import raw_but_interruptible as _raw  # (run as a script beside it)
from recorder import write_all as _write

ESC, ENTER, CTRL_U = 0x1B, 0x0D, 0x15
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"


class Agent:
    """The screen's state and what input does to it."""

    def __init__(self, path: str, argv: list[str]):
        self.path = path
        self.dialog = "--dialog" in argv
        self.busy_until = time.monotonic() + float(argv[argv.index("--busy") + 1]) if "--busy" in argv else 0.0
        self.collapse = int(argv[argv.index("--collapse") + 1]) if "--collapse" in argv else None
        self.lag = float(argv[argv.index("--lag") + 1]) if "--lag" in argv else 0.0
        self.enter_window = float(argv[argv.index("--enter-window") + 1]) if "--enter-window" in argv else 0.0
        self.submit_lag = float(argv[argv.index("--submit-lag") + 1]) if "--submit-lag" in argv else None
        self.ask_after_submit = "--ask-after-submit" in argv
        self.clock = "--clock" in argv
        self.wrap = int(argv[argv.index("--wrap") + 1]) if "--wrap" in argv else None
        self.draft = argv[argv.index("--draft") + 1] if "--draft" in argv else None
        self.submitted = False  # the last input submitted a line
        self.last_text = 0.0  # when text last arrived
        self.text = ""  # what Enter submits
        self.shown = ""  # what the input line shows
        self.pastes = 0
        self.paste: bytearray | None = None  # inside a bracketed paste

    def busy(self) -> bool:
        return time.monotonic() < self.busy_until

    def screen(self) -> bytes:
        status = "✻ Working… (esc to interrupt)" if self.busy() else ""
        if self.dialog:
            body = ("Run a command\r\n touch /tmp/x\r\nDo you want to proceed?\r\n❯ 1. Yes\r\n  2. No\r\n\r\n"
                    "Esc to cancel")
        elif self.wrap:
            rows = [self.shown[i:i + self.wrap] for i in range(0, len(self.shown), self.wrap)] or [""]
            body = "> " + "".join([rows[0]] + [f"\r\n  {row}" for row in rows[1:]])
        else:
            body = f"> {self.shown}"
        if self.draft is not None and not self.dialog:
            body += f"\r\n  {self.draft}\r\n" + "─" * 40
        if self.clock:
            body += f"\r\n\r\n  {time.monotonic() % 1000:.2f} s"
        return f"\x1b[H\x1b[2Jfake agent\r\n{status}\r\n\r\n{body}".encode()

    def feed(self, data: bytes) -> None:
        if self.dialog:
            if data in (b"1", b"y", b"\r"):
                open(self.path + ".approved", "w").close()
                self.dialog = False
            elif data == bytes([ESC]):
                self.dialog = False
            return  # anything else is the dialog's and lost
        if self.paste is not None or PASTE_START in data:
            self._paste(data)
            return
        if self.collapse is not None and len(data.decode("utf-8", "replace")) > self.collapse:
            self._add(data.decode("utf-8", "replace"), collapsed=True)  # a burst: shown as a paste
            return
        for byte in data:
            if byte == ENTER and time.monotonic() - self.last_text < self.enter_window:
                continue  # taken as a newline inside the burst: nothing submitted
            if byte == ENTER:
                with open(self.path + ".lines", "ab") as lines:
                    lines.write(self.text.encode() + b"\n")
                self.text = self.shown = ""
                self.submitted = True
                if self.ask_after_submit:
                    self.dialog = True
                    return  # the rest goes to the dialog
            elif byte == CTRL_U:
                self.text = self.shown = ""
                self.draft = None
            elif byte >= 0x20:
                self._add(bytes([byte]).decode("latin-1") if byte < 0x80 else None, raw=byte)

    def _add(self, text: str | None, collapsed: bool = False, raw: int | None = None) -> None:
        if raw is not None and raw >= 0x80:  # UTF-8 sequences are collected whole
            self._utf8 = getattr(self, "_utf8", b"") + bytes([raw])
            try:
                text = self._utf8.decode("utf-8")
            except UnicodeDecodeError:
                return
            self._utf8 = b""
        self.text += text
        self.last_text = time.monotonic()
        if collapsed:
            self.pastes += 1
            self.shown += f"[Pasted text #{self.pastes}]"
        else:
            self.shown += text

    def _paste(self, data: bytes) -> None:
        if self.paste is None:
            before, _, data = data.partition(PASTE_START)
            if before:
                self.feed(before)
            self.paste = bytearray()
        self.paste += data
        if PASTE_END in self.paste:
            content, _, rest = bytes(self.paste).partition(PASTE_END)
            self.paste = None
            text = content.decode("utf-8", "replace")
            self._add(text, collapsed=self.collapse is not None and len(text) > self.collapse)
            if rest:
                self.feed(rest)


def main(argv: list[str]) -> None:
    path = argv[1]
    agent = Agent(path, argv)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fd = sys.stdin.fileno()
    _raw(fd)
    if agent.collapse is not None:
        _write(b"\x1b[?2004h")  # bracketed paste on, as the agent CLIs ask for it
    _write(agent.screen())
    redraw_at = None
    was_busy = agent.busy()
    with open(path, "ab", buffering=0) as out:
        while True:
            tick = time.monotonic() + 0.05 if agent.clock else None
            waits = [t - time.monotonic() for t in (redraw_at, agent.busy_until if was_busy else None, tick) if t]
            readable, _, _ = select.select([fd], [], [], max(0.0, min(waits)) if waits else None)
            if readable:
                data = os.read(fd, 65536)
                if not data:
                    return
                out.write(data)
                if agent.busy():
                    with open(path + ".busy", "ab") as busy:
                        busy.write(data)
                agent.submitted = False
                agent.feed(data)
                lag = agent.submit_lag if agent.submitted and agent.submit_lag is not None else agent.lag
                redraw_at = max(redraw_at or 0.0, time.monotonic() + lag)
            now = time.monotonic()
            if redraw_at is not None and now >= redraw_at or was_busy != agent.busy() or (tick and now >= tick):
                _write(agent.screen())
                redraw_at, was_busy = None, agent.busy()


if __name__ == "__main__":
    main(sys.argv)
