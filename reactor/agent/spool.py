"""The host spool: hooks append facts to a private file; the reactor takes them in order.

Imported by the statusline and hook commands on every call, so it imports only what Python
has loaded already or what costs next to nothing (no socket module, no dataclasses).
"""

from __future__ import annotations

import fcntl
import json
import os
import time

ACTIVE = "facts.jsonl"
BATCH_PREFIX = "batch-"
# A batch of facts a round set aside for a later one (their project's lock was held): batch-NNNNNNNNNNNN-aside.jsonl
ASIDE_SUFFIX = "-aside.jsonl"
CHECKPOINT = "checkpoint.json"
LOCK = "ingest.lock"
# A single fact never comes near this; a longer line is not a fact we wrote and is skipped.
MAX_LINE = 64 * 1024
# Longest text kept in any field of a fact; hooks carry agent text, which can be huge.
MAX_TEXT = 4096
# Every kind of fact and the fields of its data; the reactor forwards kind K with query fact_K.
KINDS = {
    "session_start": ("session_id", "transcript_path", "model", "agent"),
    "turn": (),
    "spawn_start": ("task_id", "task_type", "description"),
    "spawn_launch": ("task_id", "output_file"),
    "spawn_end": ("task_id", "error", "interrupted"),
    "subagent_stop": ("agent_id",),
    "compaction": ("trigger",),
    "session_end": ("reason",),
    "context": ("session_id", "transcript_path", "percent", "window_size"),
}


class SpoolError(Exception):
    """The spool folder cannot be used (wrong owner or mode, not a folder)."""


def default_dir(environ=os.environ) -> str:
    """PS_HEALTH_SPOOL, else ${XDG_STATE_HOME:-~/.local/state}/ps-health/spool."""
    given = environ.get("PS_HEALTH_SPOOL")
    if given:
        return given
    state = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "ps-health", "spool")


def host_label(environ=os.environ) -> str:
    """PS_HEALTH_HOST, else the hostname (as the reactor's own default)."""
    return environ.get("PS_HEALTH_HOST") or os.uname().nodename


def _safe_name(host: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in host)[:64] or "_"


def status_path(directory: str, host: str) -> str:
    return os.path.join(directory, f"status-{_safe_name(host)}.json")


def poke_path(directory: str, host: str) -> str:
    return os.path.join(directory, f"poke-{_safe_name(host)}.sock")


def ensure_dir(directory: str) -> str:
    """Create the spool folder 0700; refuse one that others could write to or read."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.stat(directory, follow_symlinks=False)
    except OSError as exc:
        raise SpoolError(f"spool folder {directory}: {exc.strerror}") from None
    if not os.path.isdir(directory) or os.path.islink(directory):
        raise SpoolError(f"spool folder {directory} is not a folder")
    if st.st_uid != os.geteuid():
        raise SpoolError(f"spool folder {directory} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o077:
        raise SpoolError(f"spool folder {directory} has mode {st.st_mode & 0o777:o}; it must be 700 "
                         f"(chmod 700 {directory})")
    return directory


def clip(value, limit: int = MAX_TEXT):
    """A string cut to limit characters (None and non-strings pass as None / unchanged numbers)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[:limit]


def encode(kind: str, project: str, data: dict, pane: str | None, host: str, at: float | None = None) -> bytes:
    """One fact as a JSON line."""
    fact = {"v": 1, "kind": kind, "t": time.time() if at is None else at, "host": host, "pane": pane,
            "project": project, "data": data}
    line = json.dumps(fact, ensure_ascii=True, separators=(",", ":")) + "\n"
    return line.encode("ascii")


def append(directory: str, line: bytes) -> None:
    """Append one fact line: one write under an exclusive lock, to the file the reactor has not taken."""
    ensure_dir(directory)
    path = os.path.join(directory, ACTIVE)
    for _ in range(100):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The reactor renames the file under this same lock: if it did so while we waited,
            # our descriptor points at a taken batch and the line must go to the new file.
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                continue
            if os.fstat(fd).st_ino != current:
                continue
            os.write(fd, line)
            return
        finally:
            os.close(fd)
    raise SpoolError(f"spool file {path} kept being taken while writing")


def project_name(flag: str | None, environ, cwd) -> str | None:
    """--project, else the folder Claude Code was started in (CLAUDE_PROJECT_DIR), else cwd's name."""
    if flag:
        return flag
    for folder in (environ.get("CLAUDE_PROJECT_DIR"), cwd):
        if isinstance(folder, str) and folder.strip("/"):
            return os.path.basename(folder.rstrip("/"))
    return None


def emit(environ, kind: str, project: str | None, data: dict, named: bool = False) -> bool:
    """Record a fact of an agent in this host's spool and wake the reactor; False when not recorded.

    Only agents in a tmux pane are watched (a prompt can reach nothing else), unless the project was
    named explicitly with --project.
    """
    pane = environ.get("TMUX_PANE") or None
    if pane is not None and not (pane[:1] == "%" and pane[1:].isdigit() and len(pane) <= 10):
        pane = None
    if not project or (pane is None and not named):
        return False
    directory = default_dir(environ)
    host = host_label(environ)
    append(directory, encode(kind, clip(project, 255), data, pane, host))
    poke(directory, host)
    return True


def poke(directory: str, host: str) -> None:
    """Wake the reactor with an empty datagram; no reactor listening is fine."""
    # _socket, not socket: the full module costs a few milliseconds on every hook call.
    import _socket

    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.sendto(b".", poke_path(directory, host))
        finally:
            sock.close()
    except OSError:
        pass


def read_status(directory: str, host: str) -> dict | None:
    """The reactor's status cache for this host, or None when there is none or it is unreadable."""
    try:
        with open(status_path(directory, host), "rb") as fh:
            data = json.loads(fh.read(4 * 1024 * 1024))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_atomic(path: str, data: bytes) -> None:
    """Replace path with data so a reader sees the old or the new file, never half of one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Reader:
    """The reactor's side: takes the active file as the next numbered batch, reads facts past the checkpoint."""

    def __init__(self, directory: str):
        self.directory = directory
        self._lock_fd: int | None = None
        self._aside: str | None = None  # this round's batch of facts set aside for a later round

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def lock(self) -> bool:
        """Become the one reader of this spool; False while another process reads it."""
        ensure_dir(self.directory)
        fd = os.open(self._path(LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self._aside = None
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def batches(self) -> list[str]:
        """Taken batches not yet done, in the order their facts are forwarded: the facts set aside first (each
        was read before any fact not read yet), then the others, oldest first. Other files are left alone."""
        names = [n for n in os.listdir(self.directory) if _batch_number(n) is not None]
        return sorted(names, key=lambda n: (not n.endswith(ASIDE_SUFFIX), n))

    def take(self) -> str | None:
        """Rename the active file to the next batch, under the writers' lock, when it holds facts."""
        try:
            fd = os.open(self._path(ACTIVE), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size == 0:
                return None
            name = self._next_batch()
            os.rename(self._path(ACTIVE), self._path(name))
            return name
        finally:
            os.close(fd)

    def _next_batch(self, kind: str = "") -> str:
        taken = [_batch_number(n) for n in self.batches()]
        return f"{BATCH_PREFIX}{max(taken, default=0) + 1:012d}{kind}.jsonl"

    def set_aside_sources(self) -> dict[str, set[str]]:
        """For each fact set aside and not forwarded yet, where it was read first (source()) -> the set-aside
        batches that hold it (two, when the reactor died between copying it and moving on)."""
        found: dict[str, set[str]] = {}
        for name in self.batches():
            if name.endswith(ASIDE_SUFFIX):
                for line, end in self.facts(name):
                    found.setdefault(source(line, name, end), set()).add(name)
        return found

    def set_aside(self, line: bytes, origin: str) -> None:
        """Keep a fact for the next round, in this round's set-aside batch (forwarded before the batches not
        set aside, after the set-aside batches before it), written to disk before the caller acknowledges
        the original. The copy names where it was read first (origin), so a fact copied just before the
        reactor died, and read again after, is known and not copied twice."""
        if self._aside is None:
            self._aside = self._next_batch(ASIDE_SUFFIX[:-len(".jsonl")])
        fact = _fact(line)
        if fact is not None and "origin" not in fact:
            fact["origin"] = origin
            line = json.dumps(fact, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        fd = os.open(self._path(self._aside), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(line if line.endswith(b"\n") else line + b"\n")
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def checkpoints(self) -> dict[str, int]:
        """Each batch under way -> the offset of its next fact to forward (an earlier version kept one batch's)."""
        try:
            with open(self._path(CHECKPOINT), "rb") as fh:
                data = json.loads(fh.read())
            if "offsets" in data:
                return {str(k): int(v) for k, v in data["offsets"].items()}
            return {str(data["batch"]): int(data["offset"])}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def facts(self, name: str):
        """(line, end offset) for each fact of a batch from its checkpoint on; line None when overlong."""
        pos = self.checkpoints().get(name, 0)
        with open(self._path(name), "rb") as fh:
            fh.seek(pos)
            while line := fh.readline(MAX_LINE + 1):
                pos += len(line)
                if len(line) > MAX_LINE:
                    while not line.endswith(b"\n") and (line := fh.readline(MAX_LINE)):
                        pos += len(line)
                    yield None, pos
                    continue
                yield line, pos

    def ack(self, name: str, offset: int) -> None:
        """Everything of batch name before offset is forwarded (or skipped for good, or set aside)."""
        offsets = self.checkpoints()
        offsets[name] = offset
        write_atomic(self._path(CHECKPOINT), json.dumps({"offsets": offsets}).encode())

    def done(self, name: str) -> None:
        os.unlink(self._path(name))
        offsets = self.checkpoints()
        offsets.pop(name, None)
        if offsets:
            write_atomic(self._path(CHECKPOINT), json.dumps({"offsets": offsets}).encode())
            return
        try:
            os.unlink(self._path(CHECKPOINT))
        except FileNotFoundError:
            pass


def _batch_number(name: str) -> int | None:
    """The number of a batch's file name (batch-NNNNNNNNNNNN.jsonl or -aside.jsonl); None for any other name."""
    for suffix in (ASIDE_SUFFIX, ".jsonl"):
        if name.startswith(BATCH_PREFIX) and name.endswith(suffix):
            digits = name[len(BATCH_PREFIX):-len(suffix)]
            if len(digits) == 12 and digits.isascii() and digits.isdigit():
                return int(digits)
    return None


def source(line: bytes | None, batch: str, end: int) -> str:
    """Where a fact was read first: the origin a set-aside copy names, else its batch and end offset."""
    fact = _fact(line) if line is not None and b'"origin"' in line else None
    if fact is not None and isinstance(fact.get("origin"), str):
        return fact["origin"]
    return f"{batch}:{end}"


def _fact(line: bytes) -> dict | None:
    """A spool line as a JSON object, or None."""
    try:
        fact = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return fact if isinstance(fact, dict) else None
