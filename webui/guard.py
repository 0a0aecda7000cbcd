"""The HTTP guard in front of the whole app (an ASGI middleware outside Gradio's own): what a request must be before
Gradio sees it, and the headers every answer carries.

- On a loopback bind, a ``Host`` other than 127.0.0.1, localhost or [::1] with the app's port is refused: a web page
  that re-points its own name at 127.0.0.1 (DNS rebinding) cannot drive the app.
- A request from another web origin (an ``Origin`` that is not the ``Host``) is refused, preflights included, in
  every mode: no page elsewhere can call the API with the user's cookies.
- A request body larger than its route's limit is refused with 413 before it is read into memory.
- Login attempts are limited per client.
- Every answer says: not to be framed, no content sniffing, no referrer.

Refusals are one sentence of plain text. Gradio's queue, behind the guard: each client gets a fair share of it,
and it polls for work gently while it has none.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from lora_core.errors import human_size

Scope = dict[str, Any]
ASGIApp = Callable[..., Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
UPLOAD_PATH = "/gradio_api/upload"
LOGIN_PATHS = ("/login", "/login/")
BODY_METHODS = ("POST", "PUT", "PATCH")
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


@dataclass
class GuardSettings:
    port: int
    loopback_only: bool  # bound to loopback and no share link: only this machine's own names are accepted
    max_body_bytes: int  # any request but an upload
    max_upload_bytes: int  # a file upload (multipart)
    login_attempts: int = 10  # per client and window
    login_window_s: float = 60.0
    session_s: float = 24 * 3600  # a login lasts this long, then the page asks for the password again


def host_name_and_port(value: str) -> tuple[str, int | None]:
    """``[::1]:7860`` -> ("::1", 7860); ``localhost`` -> ("localhost", None). Malformed: ("", None)."""
    try:
        parts = urlsplit(f"//{value}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


class LoginLimiter:
    """At most ``attempts`` login attempts per client in any ``window`` seconds."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts, self.window = attempts, window
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait_s(self, client: str, now: float | None = None) -> float:
        """0 when this attempt may go on (and it is counted), else the seconds until the next one may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._seen[client]
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if len(seen) >= self.attempts:
                return seen[0] + self.window - now
            seen.append(now)
            return 0.0


class Guard:
    def __init__(self, app: ASGIApp, settings: GuardSettings, logged_in: Callable[[dict], bool] | None = None) -> None:
        self.app = app
        self.settings = settings
        self.logins = LoginLimiter(settings.login_attempts, settings.login_window_s)
        self.logged_in = logged_in or (lambda headers: True)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            status, text = refusal
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await plain(send, status, text)
            return
        if scope["type"] == "http" and "content-length" not in headers and scope.get("method") in BODY_METHODS:
            receive = await read_whole(receive, self.limit(scope))  # chunked: read it here, up to the limit
            if receive is None:
                await plain(send, 413, self.too_large(scope))
                return
        if scope["type"] == "http" and scope.get("path") == "/" and not self.logged_in(headers):
            # The login page: Gradio embeds the whole API description in it; a visitor without the password
            # gets none of it (and the page uncompressed, so that it can be cut out).
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"accept-encoding"]}
            send = without_api_info(send)
        await self.app(scope, receive, with_headers(send))

    def limit(self, scope: Scope) -> int:
        return self.settings.max_upload_bytes if scope.get("path") == UPLOAD_PATH else self.settings.max_body_bytes

    def too_large(self, scope: Scope) -> str:
        return f"The request is larger than the {human_size(self.limit(scope))} this address accepts."

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.settings.loopback_only:
            name, port = host_name_and_port(host)
            if name not in LOOPBACK_NAMES or port not in (None, self.settings.port):
                return 403, "This app answers only to this machine's own address (127.0.0.1 or localhost)."
        origin = headers.get("origin")
        if origin is not None and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
            return 403, "Requests from other web sites are refused."
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit(scope):
            return 413, self.too_large(scope)
        if scope.get("path") in LOGIN_PATHS and scope.get("method") == "POST":
            client = (scope.get("client") or ("?", 0))[0]
            wait = self.logins.wait_s(client)
            if wait > 0:
                return 429, f"Too many login attempts; try again in {int(wait) + 1} seconds."
        return None


async def read_whole(receive: Any, limit: int) -> Any:
    """A body sent without a Content-Length, read here: a ``receive`` that replays it, or None past ``limit``."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        more = message.get("more_body", False)
    replayed = False

    async def replay() -> dict:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    return replay


_API_INFO = re.compile(rb"<script>window\.gradio_api_info = .*?;</script>", re.DOTALL)


def without_api_info(send: Any) -> Any:
    """``send`` for an HTML page with Gradio's embedded API description emptied (the body is held until whole)."""
    start: dict = {}
    chunks: list[bytes] = []

    async def send_page(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = _API_INFO.sub(b"<script>window.gradio_api_info = {};</script>", b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return send_page


def with_headers(send: Any) -> Any:
    async def send_with_headers(message: dict) -> None:
        if message.get("type") == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", [])}
            message["headers"] = [
                *[(k, v) for k, v in message.get("headers", []) if k.lower() != b"access-control-allow-origin"],
                *[(k, v) for k, v in SECURITY_HEADERS if k not in names],
            ]
        await send(message)

    return send_with_headers


async def plain(send: Any, status: int, text: str) -> None:
    body = text.encode("utf-8")
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": body})


class ExpiringTokens(dict):
    """Gradio's login tokens (token -> user), each forgotten ``lifetime_s`` seconds after its login."""

    def __init__(self, lifetime_s: float) -> None:
        super().__init__()
        self.lifetime_s = lifetime_s
        self.born: dict[str, float] = {}

    def __setitem__(self, token: str, user: str) -> None:
        self.born[token] = time.monotonic()
        super().__setitem__(token, user)

    def _expire(self, token: Any) -> None:
        born = self.born.get(token)
        if born is not None and time.monotonic() - born > self.lifetime_s:
            self.born.pop(token, None)
            super().pop(token, None)

    def get(self, token: Any, default: Any = None) -> Any:
        self._expire(token)
        return super().get(token, default)

    def __contains__(self, token: object) -> bool:
        self._expire(token)
        return super().__contains__(token)

    def __getitem__(self, token: str) -> str:
        self._expire(token)
        return super().__getitem__(token)


def guarded_app_class(settings: GuardSettings) -> type:
    """Gradio's ``App`` whose whole middleware stack (Gradio's CORS included) sits inside ``Guard``."""
    from gradio.routes import App

    class GuardedApp(App):
        @property
        def tokens(self) -> ExpiringTokens:  # Gradio's session tokens (token -> user), made to expire
            return self._expiring_tokens

        @tokens.setter
        def tokens(self, value: dict) -> None:
            self._expiring_tokens = ExpiringTokens(settings.session_s)
            for token, user in value.items():
                self._expiring_tokens[token] = user

        def build_middleware_stack(self) -> ASGIApp:
            return Guard(super().build_middleware_stack(), settings, self.logged_in)

        def logged_in(self, headers: dict[str, str]) -> bool:
            """No password to give, or a session cookie of a login (Gradio's own cookie names)."""
            if self.auth is None and self.auth_dependency is None:
                return True
            cookies = SimpleCookie(headers.get("cookie", ""))
            names = (f"access-token-{self.cookie_id}", f"access-token-unsecure-{self.cookie_id}")
            return any(name in cookies and cookies[name].value in self.tokens for name in names)

    return GuardedApp


def client_key(request: Any, session_hash: str | None) -> str:
    """Who an event is from, for a fair share of the queue: the address it came from, or, from this machine (a
    local tab, or every visitor of a share link, whose tunnel ends here), its browser session."""
    host = getattr(getattr(request, "client", None), "host", "") or ""
    return f"session:{session_hash}" if host in LOOPBACK_NAMES or not host else f"address:{host}"


def share_queue_fairly(blocks: Any, per_client: int) -> None:
    """Refuse an event when its client already has ``per_client`` events waiting in Gradio's queue, so that one
    client sending many calls at once cannot make everyone else wait behind them."""
    queue = blocks._queue
    push = queue.push

    async def fair_push(body: Any, request: Any, username: str | None) -> tuple:
        key = client_key(request, body.session_hash)
        waiting = sum(
            1
            for event_queue in queue.event_queue_per_concurrency_id.values()
            for event in list(event_queue.queue)
            if client_key(event.request, event.session_hash) == key
        )
        if waiting >= per_client:
            return False, f"This client already has {waiting} requests waiting; wait for them first.", "queue_full"
        return await push(body, request, username)

    queue.push = fair_push


# Gradio's queue looks for a waiting event every 1 ms while it has none, and for progress to send every 10 ms: an
# app nobody uses kept about 4.5% of a core busy (BENCHMARKS.md, "Start-up"), CPU a training on the same machine, or
# another Space's, does not get. Every 20 ms and 100 ms instead: an event asked of an idle app waits at most 20 ms
# more before it starts, and a progress bar moves ten times a second.
QUEUE_POLL_S = 0.02
PROGRESS_POLL_S = 0.1


def poll_queue_gently(blocks: Any, poll_s: float = QUEUE_POLL_S, progress_s: float = PROGRESS_POLL_S) -> None:
    """Slow down the idle polling of ``blocks``' queue (never speed it up). Gradio's attributes for it are checked
    by tests/test_launch.py, so that a Gradio that renames them is noticed."""
    queue = blocks._queue
    queue.sleep_when_free = max(queue.sleep_when_free, poll_s)
    queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, progress_s)
