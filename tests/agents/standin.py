"""A local stand-in for three model APIs (Anthropic Messages, OpenAI Responses, Gemini), scripted by a test.

One threaded HTTP server on 127.0.0.1 serves all three, streaming: a test queues replies (text,
optionally streamed slowly; a shell or other tool call; usage figures) and reads back every
request the agent CLIs sent. Side requests (session titles, Gemini's routing and next-speaker
checks, token counts) get neutral answers and never take a queued reply.
`python -m tests.agents.standin [PORT [DUMP_DIR]]` serves until interrupted, for exploring a CLI by
hand: POST a Reply's fields as JSON to /_standin/reply to queue it.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Usage:
    """Token figures a reply reports: fresh input, cache read, cache written, output."""

    input: int = 1000
    cache_read: int = 0
    cache_write: int = 0
    output: int = 20


@dataclass(frozen=True)
class Reply:
    """One scripted model turn: after `wait` s, text in `chunks` pieces `delay` s apart, then a tool call.

    `shell` asks to run a command (the CLI opens a permission dialog); `call` is any other tool
    call, {"name": ..., "input": {...}}.
    """

    text: str = "OK."
    chunks: int = 1
    delay: float = 0.0
    wait: float = 0.0
    shell: str | None = None
    call: dict | None = None
    usage: Usage = field(default_factory=Usage)

    def pieces(self) -> list[str]:
        size = max(1, -(-len(self.text) // max(1, self.chunks)))
        return [self.text[i:i + size] for i in range(0, len(self.text), size)]


@dataclass
class Request:
    """One request as received; `received`/`finished` are time.monotonic() readings."""

    api: str
    turn: bool  # a main turn of the conversation (it took a queued reply)
    method: str
    path: str
    body: dict | None
    headers: dict
    received: float
    finished: float | None = None

    def user_texts(self) -> list[str]:
        """Every text part the user role sent in this request, in order."""
        return list(_user_texts(self.api, self.body or {}))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A CLI that cancels a turn (Esc, a reset) hangs up mid-stream: not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandIn:
    """The server. reply() queues turns (one queue for all APIs); turns() lists the main turns."""

    def __init__(self, port: int = 0, dump: Path | None = None):
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self.requests: list[Request] = []
        self.dump = dump
        handler = type("Handler", (_Handler,), {"standin": self})
        self._http = _Server(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, name="standin", daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()
        self._http.server_close()

    def reply(self, *replies: Reply) -> None:
        """Queue replies for the next main turns, in order; an empty queue answers Reply()."""
        with self._lock:
            self._replies.extend(replies)

    def pending(self) -> int:
        """Queued replies not taken yet."""
        with self._lock:
            return len(self._replies)

    def turns(self, api: str | None = None) -> list[Request]:
        """The main-turn requests received so far, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.turn and (api is None or r.api == api)]

    def _take(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else Reply()

    def _record(self, request: Request) -> Request:
        with self._lock:
            self.requests.append(request)
            n = len(self.requests)
        if self.dump:
            (self.dump / f"{n:04d}-{request.api}.json").write_text(json.dumps(
                {"path": request.path, "turn": request.turn, "headers": request.headers,
                 "body": request.body}, indent=1))
        return request

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # requests are recorded instead
        pass

    def do_HEAD(self) -> None:  # Claude Code checks the base URL with HEAD /
        self._record(None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._record(None)
        self._json(200, {"object": "list", "data": [], "models": []})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        path = urlsplit(self.path).path
        if path == "/_standin/reply":
            self.standin.reply(Reply(**{**body, "usage": Usage(**body.get("usage", {}))}))
            self._json(200, {})
        elif path.endswith("/v1/messages/count_tokens"):
            self._record(body, "anthropic")
            self._json(200, {"input_tokens": 1000})
        elif path.endswith("/v1/messages"):
            # Main turns carry Claude Code's tools; the session-title request carries none.
            self._serve(body, "anthropic", bool(body.get("tools")), _anthropic,
                        Reply('{"title": "Stand-in session"}'))
        elif path.endswith("/responses"):
            # Codex's thread-title request carries no tools either.
            self._serve(body, "openai", bool(body.get("tools")), _openai, Reply("Stand-in title"))
        elif ":streamGenerateContent" in path:
            self._serve(body, "gemini", True, _gemini_stream, None)
        elif ":generateContent" in path:
            self._record(body, "gemini")
            self._json(200, _gemini_side(body))
        elif ":countTokens" in path:
            self._record(body, "gemini")
            self._json(200, {"totalTokens": 1000})
        else:
            self._record(body)
            self._json(404, {"error": {"message": f"the stand-in does not serve {path}"}})

    def _serve(self, body: dict, api: str, turn: bool, stream, side: Reply | None) -> None:
        request = self._record(body, api, turn)
        stream(self, body, self.standin._take() if turn else side)
        request.finished = time.monotonic()

    def _record(self, body, api: str = "other", turn: bool = False) -> Request:
        return self.standin._record(Request(api, turn, self.command, self.path, body,
                                            dict(self.headers), time.monotonic()))

    def _json(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def event(self, name: str | None, payload: dict) -> None:
        head = f"event: {name}\n" if name else ""
        self.wfile.write(f"{head}data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()


def _stream_text(reply: Reply, send) -> None:
    """Send the reply's text pieces with its pacing."""
    time.sleep(reply.wait)
    for n, piece in enumerate(reply.pieces()):
        if n and reply.delay:
            time.sleep(reply.delay)
        send(piece)


def _tool_calls(reply: Reply) -> list[tuple[str, dict]]:
    """(name, input) of the tool calls a reply makes, in the shape each API names its shell tool."""
    calls = [("shell", {"command": reply.shell})] if reply.shell else []
    return calls + ([(reply.call["name"], reply.call.get("input", {}))] if reply.call else [])


# ---- Anthropic Messages ----------------------------------------------------------------

def _anthropic(h: _Handler, body: dict, reply: Reply) -> None:
    u = reply.usage
    h.start_sse()
    h.event("message_start", {"type": "message_start", "message": {
        "id": h.standin.next_id("msg"), "type": "message", "role": "assistant",
        "model": body.get("model", "claude"), "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": u.input, "cache_creation_input_tokens": u.cache_write,
                  "cache_read_input_tokens": u.cache_read, "output_tokens": 1}}})
    index = 0
    if reply.text:
        h.event("content_block_start", {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}})
        _stream_text(reply, lambda piece: h.event("content_block_delta", {
            "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
        h.event("content_block_stop", {"type": "content_block_stop", "index": 0})
        index = 1
    calls = _tool_calls(reply)
    for name, args in calls:
        if name == "shell":
            name, args = "Bash", {"command": args["command"], "description": "Run a command"}
        h.event("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": h.standin.next_id("toolu"), "name": name, "input": {}}})
        h.event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
            "type": "input_json_delta", "partial_json": json.dumps(args)}})
        h.event("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    h.event("message_delta", {"type": "message_delta",
                              "delta": {"stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None},
                              "usage": {"output_tokens": u.output}})
    h.event("message_stop", {"type": "message_stop"})


# ---- OpenAI Responses ------------------------------------------------------------------

def _openai(h: _Handler, body: dict, reply: Reply) -> None:
    u = reply.usage
    base = {"id": h.standin.next_id("resp"), "object": "response", "created_at": int(time.time()),
            "model": body.get("model", "gpt"), "output": []}
    h.start_sse()
    h.event("response.created", {"type": "response.created", "response": {**base, "status": "in_progress"}})
    out = 0
    if reply.text:
        mid = h.standin.next_id("msg")
        h.event("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": {
            "type": "message", "id": mid, "role": "assistant", "status": "in_progress", "content": []}})
        h.event("response.content_part.added", {"type": "response.content_part.added", "item_id": mid,
                                                "output_index": 0, "content_index": 0,
                                                "part": {"type": "output_text", "text": "", "annotations": []}})
        _stream_text(reply, lambda piece: h.event("response.output_text.delta", {
            "type": "response.output_text.delta", "item_id": mid, "output_index": 0, "content_index": 0,
            "delta": piece}))
        h.event("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": {
            "type": "message", "id": mid, "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": reply.text, "annotations": []}]}})
        out = 1
    for name, args in _tool_calls(reply):
        if name == "shell":
            name, args = _openai_shell(body, args["command"])
        h.event("response.output_item.done", {"type": "response.output_item.done", "output_index": out, "item": {
            "type": "function_call", "id": h.standin.next_id("fc"), "call_id": h.standin.next_id("call"),
            "name": name, "status": "completed", "arguments": json.dumps(args)}})
        out += 1
    fresh = u.input + u.cache_write
    h.event("response.completed", {"type": "response.completed", "response": {
        **base, "status": "completed", "usage": {
            "input_tokens": fresh + u.cache_read, "input_tokens_details": {"cached_tokens": u.cache_read},
            "output_tokens": u.output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": fresh + u.cache_read + u.output}}})


def _openai_shell(body: dict, command: str) -> tuple[str, dict]:
    """Codex's shell tool as this request offers it; asking to leave the sandbox makes Codex ask the user."""
    names = [t.get("name") for t in body.get("tools") or []]
    if "exec_command" in names:
        return "exec_command", {"cmd": command, "sandbox_permissions": "require_escalated",
                                "justification": "Run a command"}
    if "shell_command" in names:
        return "shell_command", {"command": command, "sandbox_permissions": "require_escalated",
                                 "justification": "Run a command"}
    return "shell", {"command": ["bash", "-lc", command], "with_escalated_permissions": True,
                     "justification": "Run a command"}


# ---- Gemini ----------------------------------------------------------------------------

def _gemini_usage(u: Usage) -> dict:
    prompt = u.input + u.cache_write + u.cache_read
    return {"promptTokenCount": prompt, "cachedContentTokenCount": u.cache_read,
            "candidatesTokenCount": u.output, "totalTokenCount": prompt + u.output}


def _gemini_stream(h: _Handler, body: dict, reply: Reply) -> None:
    h.start_sse()
    if reply.text:
        _stream_text(reply, lambda piece: h.event(None, {"candidates": [{
            "content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}]}))
    parts = []
    for name, args in _tool_calls(reply):
        if name == "shell":
            name, args = "run_shell_command", {"command": args["command"], "description": "Run a command"}
        parts.append({"functionCall": {"name": name, "args": args}})
    h.event(None, {"candidates": [{"content": {"role": "model", "parts": parts or [{"text": ""}]},
                                   "finishReason": "STOP", "index": 0}],
                   "usageMetadata": _gemini_usage(reply.usage), "modelVersion": "stand-in"})


def _gemini_side(body: dict) -> dict:
    """Answer a non-streamed side request (routing, next-speaker check) with JSON fitting its schema."""
    schema = (body.get("generationConfig") or {}).get("responseJsonSchema") or {}
    answer = {name: _neutral(name, prop) for name, prop in (schema.get("properties") or {}).items()}
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": json.dumps(answer)}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": _gemini_usage(Usage(0, 0, 0, 0))}


def _neutral(name: str, prop: dict):
    kind = str(prop.get("type", "string")).lower()
    if prop.get("enum"):
        return "user" if "user" in prop["enum"] else prop["enum"][0]
    if name == "next_speaker":
        return "user"
    return {"integer": 1, "number": 1, "boolean": False, "array": [], "object": {}}.get(kind, "stand-in")


# ---- what the user said ------------------------------------------------------------------

def _user_texts(api: str, body: dict):
    messages = {"anthropic": body.get("messages"), "openai": body.get("input"),
                "gemini": body.get("contents")}.get(api) or []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content") if api != "gemini" else message.get("parts")
        if isinstance(content, str):
            yield content
            continue
        for part in content or []:
            if api == "gemini" and "text" in part:
                yield part["text"]
            elif part.get("type") in ("text", "input_text"):
                yield part.get("text", "")


def main(argv: list[str]) -> None:
    dump = Path(argv[1]) if len(argv) > 1 else None
    with StandIn(int(argv[0]) if argv else 0, dump) as server:
        print(server.url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
