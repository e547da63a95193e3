"""Host-side fact gathering for the reactor (files, pids, transcripts, handoff folders); no DB, no decisions."""
from __future__ import annotations

import errno
import fnmatch
import json
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import BinaryIO, Iterable

log = logging.getLogger(__name__)

TAIL_BYTES = 256 * 1024
# At most this many new bytes of a transcript are read per call; more than that, and only the tail is.
MAX_READ = 16 * TAIL_BYTES
# A handoff folder is listed whole (a name costs no stat); at most this many names matching the pattern are
# looked at (stat) per call, and the listing stops after SCAN_SECONDS.
MAX_MATCHES = 10_000
SCAN_SECONDS = 2.0
_CHUNK = 1024 * 1024
# Opening never waits: a FIFO opens at once (and is then refused), a terminal never becomes ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# A line longer than this is dropped rather than buffered without bound.
_MAX_PENDING = 32 * 1024 * 1024
# Bytes kept from just before the offset to detect truncate-then-regrow on the same inode.
_SIG_BYTES = 64
_USAGE_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def file_mtimes(paths: Iterable[str]) -> dict[str, float | None | str]:
    """Return mtime per path: float, None if absent, "unknown" on other OS errors."""
    out: dict[str, float | None | str] = {}
    for path in paths:
        try:
            out[path] = os.stat(path).st_mtime
        except OSError as exc:
            # ENOTDIR: a parent component is a regular file, so the path cannot exist.
            out[path] = None if exc.errno in (errno.ENOENT, errno.ENOTDIR) else "unknown"
        except ValueError:  # embedded NUL byte
            out[path] = "unknown"
    return out


def pid_state(pid: int) -> str:
    """Return "alive", "dead" or "unknown" for a pid; zombies count as dead."""
    if pid <= 0:  # 0 and negatives address process groups, not a process
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return "unknown"
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        # Reaped between kill() and open(), unless this host simply has no procfs.
        return "dead" if os.path.isdir("/proc/self") else "alive"
    except OSError:
        return "alive"
    # comm may contain spaces and parentheses; the state follows the last ')'.
    fields = raw[raw.rfind(b")") + 1:].split()
    return "dead" if fields and fields[0] in (b"Z", b"X", b"x") else "alive"


@dataclass(frozen=True, slots=True)
class Usage:
    """Context usage of the latest assistant turn; at_offset is where its line starts."""

    tokens_used: int
    at_offset: int
    context_window_size: int | None = None


@dataclass(slots=True)
class _FileState:
    ino: tuple[int, int]
    offset: int  # bytes consumed from the file, including `pending`
    pending: bytearray
    skipping: bool  # discard bytes up to the next newline
    sig: bytes
    last: Usage | None = None
    parse: object = None  # the line parser of the file's context source (SOURCES)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _claude_usage(line: bytes) -> tuple[int, int | None] | None:
    """Claude Code transcript: a main-thread assistant turn's prompt size (its window is not recorded)."""
    # Cheap prefilter: most bytes in a transcript are tool output that cannot match.
    if b"assistant" not in line or b"usage" not in line:
        return None
    try:
        obj = json.loads(line)
        msg = obj["message"]
        if obj.get("type") != "assistant" and msg.get("role") != "assistant":
            return None
        # Sub-agent turns and synthetic error placeholders do not describe the main context.
        if obj.get("isSidechain") is True or "<synthetic>" in (msg.get("model"), obj.get("model")):
            return None
        usage = msg["usage"]
        return sum(_int(usage.get(k)) for k in _USAGE_KEYS), None
    except (ValueError, RecursionError, LookupError, TypeError, AttributeError):
        return None  # malformed JSON or an unexpected shape


def _codex_usage(line: bytes) -> tuple[int, int | None] | None:
    """Codex rollout: a token_count event's last turn input (cached included) and model_context_window."""
    if b"token_count" not in line or b"last_token_usage" not in line:
        return None
    try:
        payload = json.loads(line)["payload"]
        if payload.get("type") != "token_count":
            return None
        info = payload["info"]
        window = info.get("model_context_window")
        return _int(info["last_token_usage"].get("input_tokens")), (_int(window) or None)
    except (ValueError, RecursionError, LookupError, TypeError, AttributeError):
        return None


def _gemini_usage(line: bytes) -> tuple[int, int | None] | None:
    """Gemini CLI chat file: a reply's prompt tokens (cached included); the window is not recorded."""
    if b'"gemini"' not in line or b'"tokens"' not in line:
        return None
    try:
        obj = json.loads(line)
        if obj.get("type") != "gemini":
            return None
        return _int(obj["tokens"].get("input")), None
    except (ValueError, RecursionError, LookupError, TypeError, AttributeError):
        return None


# How each agent profile's context_source records usage: one JSON line per turn.
SOURCES = {"claude-transcript": _claude_usage, "codex-rollout": _codex_usage, "gemini-chat": _gemini_usage}


class TranscriptReader:
    """Incrementally tails agent transcripts (Claude Code transcripts, Codex rollouts, Gemini chat files, one
    JSON line per event), reporting usage changes."""

    def __init__(self, context_window_size: int | None = None, tail_bytes: int = TAIL_BYTES,
                 max_read: int = MAX_READ) -> None:
        self.context_window_size = context_window_size
        self.tail_bytes = tail_bytes
        self.max_read = max(max_read, tail_bytes)
        self.bytes_read = 0  # cumulative, for cost monitoring and tests
        self._files: dict[str, _FileState] = {}
        self._refused: set[str] = set()  # paths already logged as not regular files

    def offset(self, path: str) -> int | None:
        """Return the byte offset consumed so far for path, or None if untracked."""
        st = self._files.get(path)
        return st.offset if st else None

    def last(self, path: str) -> Usage | None:
        """Return the latest usage known for path, new or not."""
        st = self._files.get(path)
        return st.last if st else None

    def forget(self, path: str) -> None:
        """Drop state for path (e.g. the session ended)."""
        self._files.pop(path, None)
        self._refused.discard(path)

    def read(self, path: str, context_window_size: int | None = None, source: str | None = None) -> Usage | None:
        """Read the new tail of path; return the latest usage if a new one appeared, else None.

        source: the format (SOURCES; default a Claude Code transcript); a window the file records wins over
        context_window_size. Only a regular file is read, and only up to the size it had when opened (see
        MAX_READ)."""
        window = context_window_size if context_window_size is not None else self.context_window_size
        parse = SOURCES.get(source or "claude-transcript")
        if parse is None:
            raise ValueError(f"unknown context source {source!r} (known: {', '.join(SOURCES)})")
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR):
                log.debug("transcript %s not there (yet): %s", path, exc)
            else:
                self._refuse(path, f"cannot be opened: {exc}")
            return None
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                self._refuse(path, f"is not a regular file but {_file_type(fst.st_mode)}")
                return None
            self._refused.discard(path)
            with open(fd, "rb", closefd=False) as fh:
                return self._read_open(path, fh, fst, window, parse)
        except OSError as exc:
            log.debug("transcript %s unreadable: %s", path, exc)
            return None
        finally:
            os.close(fd)

    def _refuse(self, path: str, why: str) -> None:
        """A device, FIFO, socket or folder is never read: /dev/zero never ends, a FIFO may never answer."""
        self._files.pop(path, None)
        if path not in self._refused:
            self._refused.add(path)
            log.warning("transcript %r %s; it is not read", path, why)

    def _fresh(self, ino: tuple[int, int], size: int) -> _FileState:
        start = max(0, size - self.tail_bytes)
        # Start one byte early so an exact line boundary is not mistaken for a partial line.
        return _FileState(ino, start - 1 if start else 0, bytearray(), start > 0, b"")

    def _read_open(self, path: str, fh: BinaryIO, fst: os.stat_result, window: int | None,
                   parse) -> Usage | None:
        ino = (fst.st_dev, fst.st_ino)
        st = self._files.get(path)
        if st is not None and fst.st_size - st.offset > self.max_read:
            log.debug("transcript %s grew by more than %d bytes; reading its tail only", path, self.max_read)
            st = None
        if st is not None and (st.ino != ino or fst.st_size < st.offset or not self._sig_ok(fh, st)):
            log.info("transcript %s truncated, replaced or rewritten; restarting", path)
            st = None
        if st is not None and st.parse is not parse:
            st = None  # read as another format now: from the tail again
        if st is None:
            st = self._files[path] = self._fresh(ino, fst.st_size)
            st.parse = parse
        fh.seek(st.offset)
        found: tuple[int, int, int | None] | None = None
        left = fst.st_size - st.offset  # bytes written after the open wait for the next call
        while left > 0 and (chunk := fh.read(min(_CHUNK, left))):
            left -= len(chunk)
            self.bytes_read += len(chunk)
            found = self._consume(st, chunk) or found
        if found is None:
            return None
        st.last = Usage(found[0], found[1], found[2] or window)
        return st.last

    def _sig_ok(self, fh: BinaryIO, st: _FileState) -> bool:
        fh.seek(st.offset - len(st.sig))
        got = fh.read(len(st.sig))
        self.bytes_read += len(got)
        return got == st.sig

    def _consume(self, st: _FileState, data: bytes) -> tuple[int, int, int | None] | None:
        """Feed bytes into st; return (tokens, line_offset, window) of the last usage line, if any."""
        base = st.offset - len(st.pending)  # file offset of st.pending[0]
        st.offset += len(data)
        tail = data[-_SIG_BYTES:]
        st.sig = (st.sig + tail)[-_SIG_BYTES:] if len(tail) < _SIG_BYTES else tail
        if b"\n" not in data:
            # Extend in place: re-concatenating a long line chunk by chunk would be quadratic.
            if not st.skipping:
                st.pending += data
                self._cap_pending(st)
            return None
        buf = st.pending + data if st.pending else data
        pos, found = 0, None
        if st.skipping:
            st.skipping, pos = False, buf.find(b"\n") + 1
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            usage = st.parse(bytes(buf[pos:nl]))
            if usage is not None:
                found = (usage[0], base + pos, usage[1])
            pos = nl + 1
        st.pending = bytearray(buf[pos:])
        self._cap_pending(st)
        return found

    @staticmethod
    def _cap_pending(st: _FileState) -> None:
        if len(st.pending) > _MAX_PENDING:
            log.warning("transcript line over %d bytes dropped", _MAX_PENDING)
            st.pending, st.skipping = bytearray(), True


class HandoffWatcher:
    """Lists handoff files that appeared or changed after a given time."""

    def __init__(self, max_matches: int = MAX_MATCHES, scan_seconds: float = SCAN_SECONDS) -> None:
        self.max_matches = max_matches
        self.scan_seconds = scan_seconds

    def new_files(self, folder: str, pattern: str, since: float) -> list[tuple[str, float]]:
        """Return (path, mtime) of regular files in folder matching pattern with mtime > since.

        Only a folder is listed (a FIFO or file is not opened for reading), every name of it, and only the
        names that match are looked at (at most max_matches, within scan_seconds); nothing is read from the
        files. Names starting with a dot match only a pattern that does."""
        try:
            fd = os.open(folder, _OPEN_FLAGS | os.O_DIRECTORY)
        except (OSError, ValueError):
            return []  # missing, not a folder, unreadable
        match = re.compile(fnmatch.translate(pattern)).match  # what fnmatchcase does, compiled once
        dotted = pattern.startswith(".")
        deadline = time.monotonic() + self.scan_seconds
        found, matches = [], 0
        try:
            with os.scandir(fd) as entries:
                for n, entry in enumerate(entries):
                    if time.monotonic() > deadline:
                        log.warning("handoff folder %r not listed whole: out of time after %d entries",
                                    folder, n)
                        break
                    name = entry.name
                    if name.startswith(".") != dotted or not match(name):
                        continue
                    if matches >= self.max_matches:
                        log.warning("handoff folder %r holds more than %d names matching %r; only those were "
                                    "looked at", folder, self.max_matches, pattern)
                        break
                    matches += 1
                    try:
                        st = entry.stat()  # follows a link; stat never opens the file
                    except OSError:
                        continue  # vanished or unreadable between listing and stat
                    if stat.S_ISREG(st.st_mode) and st.st_mtime > since:
                        found.append((os.path.join(folder, name), st.st_mtime))
        except OSError as exc:
            log.debug("handoff folder %s unreadable: %s", folder, exc)
        finally:
            os.close(fd)
        return sorted(found, key=lambda item: (item[1], item[0]))


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "something else"
