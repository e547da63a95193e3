"""Test helper run in a tmux pane: a small line editor that records every byte typed into it.

Usage: recorder.py FILE [--tick SECONDS] [--no-echo] [--times] [--on TEXT COMMAND]...

It shows a "> " prompt and the input line after it, like an agent CLI's input box: printable
input is added to the line and shown, Backspace deletes a character, Ctrl-U empties the line
(erased from the screen, as line editors do), and Enter (\\r) submits it: the line is
appended to FILE.lines and a new prompt is shown. Every byte read is appended to FILE. The tty
is non-canonical and does not echo, but keeps ISIG, so a raw Ctrl-C typed into the pane kills
this program (which is how a test sees unsanitised input). With --tick, a counter is printed
every SECONDS to make the pane look busy (the prompt and line are shown again after it); with
--no-echo the line is never shown. With --on, the program plays a PS: once a submitted line
contains TEXT it runs COMMAND (sh -c, test-supplied) once. With --times, each read is also
logged to FILE.times as "MONOTONIC HEXBYTES". FILE is created only once the tty is set up: its
existence means "ready". Exits only on a signal.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import time

PROMPT = b"> "
ENTER, CTRL_U, BACKSPACES = 0x0D, 0x15, (0x08, 0x7F)


def raw_but_interruptible(fd: int) -> None:
    attrs = termios.tcgetattr(fd)
    # Input flags off so \r stays \r and no byte is translated or swallowed.
    attrs[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON
                  | termios.ISTRIP)
    attrs[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)  # ISIG kept
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def write_all(data: bytes) -> None:
    while data:
        data = data[os.write(1, data):]


class Editor:
    """The input line: edited byte by byte, shown after the prompt, submitted on Enter."""

    def __init__(self, lines, rules: list[tuple[bytes, str]], echo: bool):
        self.line = bytearray()
        self._lines = lines
        self._rules = rules
        self._fired: set[int] = set()
        self._echo = echo

    def feed(self, data: bytes) -> None:
        out = bytearray()
        for byte in data:
            if byte == ENTER:
                self._submit(bytes(self.line))
                self.line.clear()
                out += b"\r\n" + PROMPT
            elif byte == CTRL_U:
                out += self._erase()
                self.line.clear()
            elif byte in BACKSPACES:
                if self.line:
                    # one character back, however many bytes its UTF-8 form has
                    cut = len(self.line) - 1
                    while cut > 0 and self.line[cut] & 0xC0 == 0x80:
                        cut -= 1
                    del self.line[cut:]
                    out += b"\b \b" if self._echo else b""
            elif byte >= 0x20:
                self.line.append(byte)
                if self._echo:
                    out.append(byte)
        write_all(bytes(out))

    def _erase(self) -> bytes:
        """Move to the prompt's row, clear from there to the end of the screen, show the prompt again."""
        shown = len(PROMPT) + (len(self.line.decode("utf-8", "replace")) if self._echo else 0)
        width = max(1, os.get_terminal_size(1).columns)
        # the cursor sits on the row of the last character shown (a full row has not wrapped yet)
        rows = (shown - 1) // width if shown % width == 0 else shown // width
        return (f"\x1b[{rows}A".encode() if rows else b"") + b"\r\x1b[J" + PROMPT

    def redraw(self) -> bytes:
        return PROMPT + (bytes(self.line) if self._echo else b"")

    def _submit(self, line: bytes) -> None:
        self._lines.write(line + b"\n")
        for n, (text, command) in enumerate(self._rules):
            if n not in self._fired and text in line:
                self._fired.add(n)
                subprocess.Popen(["sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)


def main(argv: list[str]) -> None:
    path = argv[1]
    rules = [(argv[i + 1].encode(), argv[i + 2]) for i, a in enumerate(argv) if a == "--on"]
    tick = float(argv[argv.index("--tick") + 1]) if "--tick" in argv else None
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # die at once, like a real CLI would
    fd = sys.stdin.fileno()
    raw_but_interruptible(fd)
    count = 0
    next_tick = time.monotonic() + tick if tick else None
    with open(path + ".lines", "ab", buffering=0) as lines:
        editor = Editor(lines, rules, "--no-echo" not in argv)
        write_all(PROMPT)
        times = open(path + ".times", "a", buffering=1) if "--times" in argv else None
        with open(path, "ab", buffering=0) as out:
            while True:
                wait = max(0.0, next_tick - time.monotonic()) if next_tick else None
                readable, _, _ = select.select([fd], [], [], wait)
                if readable:
                    data = os.read(fd, 65536)
                    if not data:
                        return  # the pane is gone
                    if times is not None:
                        times.write(f"{time.monotonic()!r} {data.hex()}\n")
                    out.write(data)
                    editor.feed(data)
                if next_tick and time.monotonic() >= next_tick:
                    count += 1
                    write_all(f"\r\ntick {count}\r\n".encode() + editor.redraw())
                    next_tick += tick


if __name__ == "__main__":
    main(sys.argv)
