"""Per-session chat: each page answers with its own base model and adapter from shared engines; Stop ends one
session's reply (or its wait) and no other; a base model dropped from the pool comes back at the next answer."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny import wait_for

from lora_core import sessions
from lora_core.chat import ChatEngine, GenerationSettings
from lora_core.errors import ChatError
from lora_core.sessions import ChatSession, loaded_engines, unload_all

QUESTION = [{"role": "user", "content": "Who keeps the lighthouse of Lumen Bay?"}]
GREEDY = GenerationSettings(max_new_tokens=12)


def random_adapter(base: Path, name: str, seed: int) -> Path:
    """A LoRA adapter for ``base`` whose weights are random (so it changes the answers), saved like a trained one."""
    import torch
    from peft import LoraConfig, get_peft_model

    from lora_core.adapters import save_adapter
    from lora_core.manifest import Manifest
    from lora_core.models import load_for_inference, load_tokenizer

    torch.manual_seed(seed)
    model = get_peft_model(load_for_inference(base), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for key, param in model.named_parameters():
        if "lora_B" in key:
            torch.nn.init.normal_(param, std=0.5)
    manifest = Manifest(status="completed", task=name, base_model=str(base), base_model_name=base.name)
    return save_adapter(model, load_tokenizer(base), manifest, base.parent.parent / "LoRA" / name)


@pytest.fixture(scope="module")
def models(demo_home) -> SimpleNamespace:
    base = demo_home / "Models" / "LLM" / "demo"
    return SimpleNamespace(base=base, x=random_adapter(base, "x", 1), y=random_adapter(base, "y", 2))


@pytest.fixture(autouse=True)
def fresh_pool(in_demo_home):
    yield
    unload_all()


def alone(models, adapter: Path | None) -> str:
    """The answer of an engine of its own with ``adapter`` (or the pure base)."""
    engine = ChatEngine()
    engine.load_base(models.base)
    if adapter is not None:
        engine.activate(adapter)
    return engine.generate(QUESTION, GREEDY)


def test_one_sessions_choice_never_changes_anothers_answers(models) -> None:
    a, b = ChatSession(), ChatSession()
    a.load(models.base, models.x)
    b.load(models.base)
    with_x, plain, with_y = alone(models, models.x), alone(models, None), alone(models, models.y)
    assert len({with_x, plain, with_y}) == 3
    assert (a.generate(QUESTION, GREEDY), b.generate(QUESTION, GREEDY)) == (with_x, plain)
    b.load(models.base, models.y)  # B switches: A still answers with X
    assert (a.generate(QUESTION, GREEDY), b.generate(QUESTION, GREEDY)) == (with_x, with_y)
    assert a.status() == {"base": str(models.base.resolve()), "active": "x"} and b.status()["active"] == "y"
    assert len(loaded_engines()) == 1  # one copy of the base, both adapters on it
    assert a.compare(QUESTION, GREEDY) == {"base": plain, "adapter": with_x}
    b.deactivate()
    assert b.generate(QUESTION, GREEDY) == plain
    with pytest.raises(ChatError) as err:
        b.compare(QUESTION, GREEDY)
    assert err.value.code == "no_active_adapter"
    with pytest.raises(ChatError) as err:
        ChatSession().generate(QUESTION, GREEDY)
    assert err.value.code == "no_base_loaded"


def slowed(engine: ChatEngine, seconds: float):
    """Each forward pass of ``engine``'s model takes ``seconds`` longer (a long reply on the tiny model)."""
    inner = engine.model.get_base_model() if hasattr(engine.model, "get_base_model") else engine.model
    return inner.register_forward_pre_hook(lambda *_: time.sleep(seconds))


def test_stop_ends_its_own_sessions_reply_or_wait_and_no_other(models) -> None:
    a, b = ChatSession(), ChatSession()
    a.load(models.base)  # the random base never says its end-of-turn token: a long reply
    b.load(models.base, models.x)
    hook = slowed(a.engine()[0], 0.02)
    long = GenerationSettings(max_new_tokens=400)
    pieces: list[str] = []
    ended: dict[str, float] = {}

    def run(session: ChatSession, label: str) -> None:
        for piece in session.stream(QUESTION, long):
            if label == "a":
                pieces.append(piece)
        ended[label] = time.monotonic()

    try:
        reading_a = threading.Thread(target=run, args=(a, "a"))
        reading_a.start()
        assert wait_for(lambda: a.busy)
        reading_b = threading.Thread(target=run, args=(b, "b"))
        reading_b.start()
        assert wait_for(lambda: b.replying) and b.busy  # B waits for A's reply
        b.stop()
        reading_b.join(timeout=2)
        assert "b" in ended and "a" not in ended  # B's wait ended; A's reply goes on
        stopped_at = time.monotonic()
        a.stop()
        reading_a.join(timeout=2)
        assert ended["a"] - stopped_at < 1.0 and len("".join(pieces)) < 400
        assert a.was_stopped and b.was_stopped
    finally:
        hook.remove()
    assert b.generate(QUESTION, GREEDY) == alone(models, models.x)  # a new reply after a Stop runs again


def test_a_base_dropped_from_the_pool_comes_back_at_the_next_answer(models, monkeypatch) -> None:
    other = shutil.copytree(models.base, models.base.parent / "demo-copy")
    try:
        monkeypatch.setenv("SIMPLE_LORA_CHAT_MODELS", "1")
        a, b = ChatSession(), ChatSession()
        a.load(models.base, models.x)
        first = a.generate(QUESTION, GREEDY)
        b.load(other)
        assert len(loaded_engines()) == 1 and loaded_engines()[0].base == other.resolve()
        assert a.generate(QUESTION, GREEDY) == first  # demo loaded again, X on it again
        assert loaded_engines()[0].base == models.base.resolve()
        monkeypatch.setenv("SIMPLE_LORA_CHAT_MODELS", "two")  # not a number: the default
        assert sessions.pool_size() == sessions.DEFAULT_POOL_SIZE
    finally:
        shutil.rmtree(other)


def test_a_deleted_adapter_is_said_once_then_the_base_answers(models) -> None:
    gone = shutil.copytree(models.x, models.x.parent / "x-copy")
    chat = ChatSession()
    chat.load(models.base, gone)
    chat.generate(QUESTION, GREEDY)
    sessions.forget_adapter(gone)
    shutil.rmtree(gone)
    with pytest.raises(ChatError) as err:
        chat.generate(QUESTION, GREEDY)
    assert err.value.code == "adapter_deleted" and "x-copy" in err.value.message
    assert chat.status()["active"] is None and chat.generate(QUESTION, GREEDY) == alone(models, None)


def test_each_page_has_its_own_session_and_a_closed_page_is_forgotten(models, monkeypatch) -> None:
    from webui import chat_sessions

    one, two = SimpleNamespace(session_hash="one"), SimpleNamespace(session_hash="two")
    assert chat_sessions.session(one) is chat_sessions.session(one)
    assert chat_sessions.session(one) is not chat_sessions.session(two)
    kept, stopped = chat_sessions.session(one), []
    kept.stop = lambda: stopped.append(True)  # a closed page's reply stops
    chat_sessions.drop(one)
    assert stopped and chat_sessions.session(one) is not kept
    monkeypatch.setattr(chat_sessions, "MAX_SESSIONS", 3)
    for n in range(5):
        chat_sessions.session(SimpleNamespace(session_hash=f"many{n}"))
    assert len(chat_sessions._SESSIONS) == 3  # bounded: the least recently used are forgotten
