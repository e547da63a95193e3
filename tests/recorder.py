"""Test helper run in a tmux pane: append every byte typed into it to FILE.

Usage: recorder.py FILE [--tick SECONDS] [--no-echo] [--on TEXT COMMAND]...

The tty is non-canonical and does not echo, but keeps ISIG, so a raw Ctrl-C typed into
the pane kills this program (which is how a test sees unsanitised input). Printable
input is echoed so capture-pane shows it; Enter (\\r) is echoed as a new line. With
--tick, a counter is printed every SECONDS to make the pane look busy; with --no-echo
input is recorded but never shown. With --on, the program plays a PS: once a submitted
line contains TEXT it runs COMMAND (sh -c, test-supplied) once. FILE is created
only once the tty is set up: its existence means "ready". Exits only on a signal.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import time


def _raw_but_interruptible(fd: int) -> None:
    attrs = termios.tcgetattr(fd)
    # Input flags off so \r stays \r and no byte is translated or swallowed.
    attrs[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON
                  | termios.ISTRIP)
    attrs[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)  # ISIG kept
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _echo(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        if byte == 0x0D:
            out += b"\r\n"
        elif byte >= 0x20 and byte != 0x7F:
            out.append(byte)
    return bytes(out)


def _write_all(data: bytes) -> None:
    while data:
        data = data[os.write(1, data):]


def _react(line: bytes, rules: list[tuple[bytes, str]], fired: set[int]) -> None:
    for n, (text, command) in enumerate(rules):
        if n not in fired and text in line:
            fired.add(n)
            subprocess.Popen(["sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)


def main(argv: list[str]) -> None:
    path = argv[1]
    rules = [(argv[i + 1].encode(), argv[i + 2]) for i, a in enumerate(argv) if a == "--on"]
    fired: set[int] = set()
    line = b""
    tick = float(argv[argv.index("--tick") + 1]) if "--tick" in argv else None
    echo = "--no-echo" not in argv
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # die at once, like a real CLI would
    fd = sys.stdin.fileno()
    _raw_but_interruptible(fd)
    count = 0
    next_tick = time.monotonic() + tick if tick else None
    with open(path, "ab", buffering=0) as out:
        while True:
            wait = max(0.0, next_tick - time.monotonic()) if next_tick else None
            readable, _, _ = select.select([fd], [], [], wait)
            if readable:
                data = os.read(fd, 65536)
                if not data:
                    return  # the pane is gone
                out.write(data)
                line += data
                while b"\r" in line:
                    done, line = line.split(b"\r", 1)
                    _react(done, rules, fired)
                if echo:
                    _write_all(_echo(data))
            if next_tick and time.monotonic() >= next_tick:
                count += 1
                _write_all(f"tick {count}\r\n".encode())
                next_tick += tick


if __name__ == "__main__":
    main(sys.argv)
