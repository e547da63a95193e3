"""Benchmark pane program: report every read from the tty, with its arrival time, to a Unix socket.

Usage: stamp_pane.py INDEX SOCKET. Each datagram is struct "<Hd" (pane index, time.monotonic())
followed by the bytes read; an empty one says "ready". It shows a "> " prompt and echoes
printable input after it, so capture-pane shows it as an agent CLI's input line would.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import termios
import time


def main(argv: list[str]) -> None:
    index, path = int(argv[1]), argv[2]
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    attrs = termios.tcgetattr(0)
    attrs[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON | termios.ISTRIP)
    attrs[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)
    attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
    termios.tcsetattr(0, termios.TCSANOW, attrs)
    os.write(1, b"> ")
    out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    out.connect(path)
    out.send(struct.pack("<Hd", index, time.monotonic()))
    while True:
        data = os.read(0, 65536)
        stamp = time.monotonic()
        if not data:
            return
        out.send(struct.pack("<Hd", index, stamp) + data)
        echo = bytes(b for b in data if 0x20 <= b != 0x7F) + (b"\r\n> " if b"\r" in data else b"")
        while echo:
            echo = echo[os.write(1, echo):]


if __name__ == "__main__":
    main(sys.argv)
