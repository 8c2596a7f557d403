"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

It answers `POST /v1/chat/completions` with scripted replies (text or `tool_calls`) and
exact `usage` counts, so an agent step runs through litellm's real `openai/` provider and
HTTP client exactly as against a remote model. A reply is chosen by the request, not by
arrival order: the first rule whose `model`/`contains` match the request gives the reply
for the request's turn (the number of assistant messages in it). The same conversation
therefore always gets the same reply, which is what a resumed run needs: its re-issued
model calls meet the replies the first process met, and the tool call ids
(`call_<turn>_<index>`) are the same too.

In-process: `with serve(Script(...)) as server:` (a thread on port 0; `server.api_base`,
`server.requests`). Across processes: `python tests/loopback_openai.py SCRIPT.json` prints
its api_base on the first line and serves until killed, so a server can outlive a
`planfile run` subprocess that is killed and resumed; `PLANFILE_LOOPBACK_SCRIPT` names the
script file when no argument is given. Script file format (JSON):

    {"rules": [{"model": "scripted", "contains": "rent",
                "turns": [{"tool_calls": [{"name": "search", "arguments": {"query": "rent"}}],
                           "prompt_tokens": 120, "completion_tokens": 15},
                          {"content": "Rent is high."}]}],
     "default": {"content": "ok"}}

A reply may also carry `delay_s` (simulated latency) and `status` (an HTTP error: 429, 500).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class Call:
    """A scripted tool call: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """One scripted reply: text and/or tool calls, with the usage the server reports."""

    content: str | None = None
    tool_calls: tuple[Call, ...] = ()
    prompt_tokens: int = 100
    completion_tokens: int = 20
    delay_s: float = 0.0
    status: int = 200

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        calls = tuple(
            Call(str(c["name"]), dict(c.get("arguments") or {})) for c in data.get("tool_calls", [])
        )
        return cls(
            content=data.get("content"),
            tool_calls=calls,
            prompt_tokens=int(data.get("prompt_tokens", 100)),
            completion_tokens=int(data.get("completion_tokens", 20)),
            delay_s=float(data.get("delay_s", 0.0)),
            status=int(data.get("status", 200)),
        )


@dataclass(frozen=True)
class Rule:
    """Replies for the conversations this rule matches, one per turn (the last repeats)."""

    turns: tuple[Reply, ...]
    model: str | None = None  # the request's `model` (without the `openai/` prefix)
    contains: str | None = None  # a substring of the request's messages

    def matches(self, model: str, text: str) -> bool:
        return (self.model is None or self.model == model) and (
            self.contains is None or self.contains in text
        )


@dataclass(frozen=True)
class Script:
    """The server's whole behaviour: rules tried in order, else the default reply."""

    rules: tuple[Rule, ...] = ()
    default: Reply = Reply(content="ok")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Script:
        rules = tuple(
            Rule(
                turns=tuple(Reply.from_json(t) for t in r["turns"]),
                model=r.get("model"),
                contains=r.get("contains"),
            )
            for r in data.get("rules", [])
        )
        default = Reply.from_json(data["default"]) if "default" in data else Reply(content="ok")
        return cls(rules, default)

    @classmethod
    def load(cls, path: str | Path) -> Script:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

    def reply(self, request: dict[str, Any]) -> tuple[Reply, int]:
        """The reply to a chat request and the request's turn."""
        messages = request.get("messages") or []
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        text = "\n".join(_text(m.get("content")) for m in messages)
        model = str(request.get("model", ""))
        for rule in self.rules:
            if rule.matches(model, text) and rule.turns:
                return rule.turns[min(turn, len(rule.turns) - 1)], turn
        return self.default, turn


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def completion(request: dict[str, Any], reply: Reply, turn: int) -> dict[str, Any]:
    """The OpenAI chat completion body for a scripted reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{turn}_{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for index, call in enumerate(reply.tool_calls)
        ]
    return {
        "id": f"chatcmpl-loopback-{turn}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


class LoopbackServer(ThreadingHTTPServer):
    """The HTTP server: a script, and every request it was sent (for assertions)."""

    daemon_threads = True

    def __init__(self, script: Script, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def config_toml(self, model: str = "scripted", tiers: tuple[str, ...] = ("fast",)) -> str:
        """planfile.toml text that sends `tiers` to this server as `openai/<model>`."""
        lines = ["[tiers]"]
        lines += [f'{tier} = "openai/{model}"' for tier in tiers]
        lines += [
            "",
            f'[models."openai/{model}"]',
            f'api_base = "{self.api_base}"',
            'api_key = "loopback"',
            "input_cost_per_million = 1.0",
            "output_cost_per_million = 2.0",
        ]
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer
    protocol_version = "HTTP/1.1"  # keep-alive, as OpenAI's client expects

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        self.server.record(request)
        reply, turn = self.server.script.reply(request)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            body = {"error": {"message": f"scripted status {reply.status}", "type": "scripted"}}
            self._send(reply.status, body, {"retry-after": "0"})
            return
        self._send(200, completion(request, reply, turn))

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": []})

    def _send(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are kept in `server.requests`, not printed


@contextmanager
def serve(script: Script) -> Iterator[LoopbackServer]:
    """The server on a free port in a daemon thread, shut down on exit."""
    server = LoopbackServer(script)
    thread = threading.Thread(target=server.serve_forever, name="loopback-openai", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(name="loopback")
def loopback_server() -> Iterator[LoopbackServer]:
    """The `loopback` fixture: a running server answering "ok"; a test sets
    `loopback.script` to its own script. Import `loopback_server` to use it."""
    with serve(Script()) as server:
        yield server


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else os.environ.get("PLANFILE_LOOPBACK_SCRIPT")
    if not path:
        print(
            "usage: loopback_openai.py SCRIPT.json (or PLANFILE_LOOPBACK_SCRIPT)", file=sys.stderr
        )
        return 2
    server = LoopbackServer(Script.load(path))
    print(server.api_base, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
