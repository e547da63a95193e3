"""Test helper run in a tmux pane: an agent CLI that, once a line is submitted, hides its input line for a
moment (as while it works) and exits, leaving the pane to the shell that started it.

Usage: exit_agent.py FILE [SECONDS]   (FILE gets every byte read; it exists once the tty is set up)
"""

from __future__ import annotations

import os
import sys
import termios
import time

from recorder import raw_but_interruptible, write_all  # (run as a script beside it)


def main(path: str, hide: float) -> None:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    raw_but_interruptible(fd)
    write_all(b"\x1b[H\x1b[2Jexit agent\r\n> ")
    line = b""
    with open(path, "ab", buffering=0) as out:
        while True:
            data = os.read(fd, 65536)
            out.write(data)
            for byte in data:
                if byte == 0x0D:
                    write_all(b"\x1b[H\x1b[2Jworking...\r\n")  # no input line while it works
                    time.sleep(hide)
                    write_all(b"bye\r\n")
                    termios.tcsetattr(fd, termios.TCSADRAIN, saved)
                    return
                if byte >= 0x20:
                    line += bytes([byte])
                    write_all(bytes([byte]))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.3)
