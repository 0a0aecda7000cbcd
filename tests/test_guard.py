"""The HTTP guard (webui/guard.py) in front of a stand-in app: which requests reach the app, and what every answer
carries. The same guard in front of the real app is tested in tests/test_reliability_processes.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from webui.guard import Guard, GuardSettings, LoginLimiter, host_name_and_port

PORT = 7860


async def echo(scope, receive, send):
    """The app behind the guard: answers 200 with the size of the body it read."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    headers = [(b"content-type", b"text/plain"), (b"access-control-allow-origin", b"http://evil.example")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": str(size).encode()})


def request(method: str, path: str, *, loopback: bool = True, **kwargs) -> httpx.Response:
    settings = GuardSettings(port=PORT, loopback_only=loopback, max_body_bytes=1000, max_upload_bytes=5000,
                             login_attempts=3, login_window_s=60)  # fmt: skip
    guard = Guard(echo, settings)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=guard, client=("10.0.0.9", 1234))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{PORT}") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.mark.parametrize("host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}", "localhost"])
def test_this_machines_own_names_are_served_with_the_security_headers(host) -> None:
    answer = request("GET", "/config", headers={"Host": host})
    assert answer.status_code == 200
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in answer.headers  # never, whatever the app behind says


@pytest.mark.parametrize("host", [f"evil.example:{PORT}", "evil.example", f"127.0.0.1:{PORT + 1}", "127.0.0.1.evil:80",
                                  "", "[::2]:7860"])  # fmt: skip
def test_a_foreign_host_is_refused_on_a_loopback_bind(host) -> None:
    answer = request("GET", "/config", headers={"Host": host})
    assert answer.status_code == 403 and answer.text.startswith("This app answers only to this machine")
    assert answer.headers["x-frame-options"] == "DENY"


def test_any_host_is_served_when_the_app_is_reachable_from_other_machines() -> None:
    assert request("GET", "/config", loopback=False, headers={"Host": "myspace.hf.space"}).status_code == 200


@pytest.mark.parametrize("loopback", [True, False])
def test_other_web_origins_are_refused_preflights_included(loopback) -> None:
    host = f"127.0.0.1:{PORT}"
    evil = {"Host": host, "Origin": "http://evil.example"}
    assert request("POST", "/gradio_api/queue/join", loopback=loopback, headers=evil).status_code == 403
    preflight = {**evil, "Access-Control-Request-Method": "POST"}
    answer = request("OPTIONS", "/gradio_api/queue/join", loopback=loopback, headers=preflight)
    assert answer.status_code == 403 and "access-control-allow-origin" not in answer.headers
    same = {"Host": host, "Origin": f"http://{host}"}
    assert request("POST", "/gradio_api/queue/join", loopback=loopback, headers=same).status_code == 200


def test_a_body_over_its_limit_is_refused_before_it_is_read() -> None:
    host = {"Host": f"127.0.0.1:{PORT}"}
    assert request("POST", "/gradio_api/queue/join", headers=host, content=b"x" * 1000).text == "1000"
    too_big = request("POST", "/gradio_api/queue/join", headers=host, content=b"x" * 1001)
    assert (
        too_big.status_code == 413
        and too_big.text == "The request is larger than the 1000 bytes this address accepts."
    )

    async def chunks():  # no Content-Length: the guard counts as it reads
        yield b"x" * 600
        yield b"x" * 600

    assert request("POST", "/gradio_api/queue/join", headers=host, content=chunks()).status_code == 413
    upload = request("POST", "/gradio_api/upload", headers=host, content=b"x" * 4000)  # uploads have their own cap
    assert upload.status_code == 200 and upload.text == "4000"


def test_login_attempts_are_limited_per_client() -> None:
    limiter = LoginLimiter(attempts=3, window=60)
    assert [limiter.wait_s("a", now=t) for t in (0, 1, 2)] == [0, 0, 0]
    assert limiter.wait_s("a", now=3) == pytest.approx(57)
    assert limiter.wait_s("b", now=3) == 0  # another client is not held up
    assert limiter.wait_s("a", now=60.5) == 0  # the first attempt is out of the window
    answer = request("POST", "/login", headers={"Host": f"127.0.0.1:{PORT}"})
    assert answer.status_code == 200


def test_host_names_are_read_like_a_browser_sends_them() -> None:
    assert host_name_and_port("[::1]:7860") == ("::1", 7860)
    assert host_name_and_port("LOCALHOST") == ("localhost", None)
    assert host_name_and_port("a:b:c") == ("", None)


def test_the_login_page_carries_no_api_description() -> None:
    page = (
        b'<html><script>window.gradio_config = {};</script><script>window.gradio_api_info = {"a": 1};</script></html>'
    )

    async def html(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9999")]})
        await send({"type": "http.response.body", "body": page[:40], "more_body": True})
        await send({"type": "http.response.body", "body": page[40:]})

    settings = GuardSettings(port=PORT, loopback_only=True, max_body_bytes=1000, max_upload_bytes=5000)

    def get(logged_in: bool, path: str = "/") -> httpx.Response:
        async def go():
            guard = Guard(html, settings, lambda headers: logged_in)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=guard), base_url=f"http://127.0.0.1:{PORT}"
            ) as c:
                return await c.get(path)

        return asyncio.run(go())

    outside = get(False)
    assert b"gradio_api_info = {};" in outside.content and b'"a": 1' not in outside.content
    assert int(outside.headers["content-length"]) == len(outside.content)
    assert get(True).content == page  # logged in: untouched
    assert get(False, "/config").content == page  # only the page itself is rewritten (the rest needs a login)


def test_a_login_expires(monkeypatch) -> None:
    from webui import guard

    clock = [1000.0]
    monkeypatch.setattr(guard.time, "monotonic", lambda: clock[0])
    tokens = guard.ExpiringTokens(lifetime_s=3600)
    tokens["abc"] = "ada"
    clock[0] += 3599
    assert tokens.get("abc") == "ada" and "abc" in tokens
    clock[0] += 2
    assert tokens.get("abc") is None and "abc" not in tokens and len(tokens) == 0
