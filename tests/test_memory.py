"""The cycle collector around trainings (lora_core/memory.py): what is alive when a training starts is frozen, so
later collections skip it; garbage made after is collected as before, and a model that was alive at a freeze is
still freed once it is let go."""

from __future__ import annotations

import gc
import weakref

import pytest

from lora_core import memory


class Node:
    """An object in a reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen():
    """No automatic collection during a test (one could free a cycle before the test looks), nothing frozen after."""
    enabled = gc.isenabled()
    gc.disable()
    yield
    if enabled:
        gc.enable()
    gc.unfreeze()


def test_garbage_made_after_the_freeze_is_collected_and_the_frozen_objects_stay_frozen():
    """Checked on the objects themselves, not on ``gc.get_freeze_count()``: another thread of the test process (a
    served app's) may free frozen objects meanwhile, and the count with them."""
    old = Node()
    kept = weakref.ref(old)
    memory.settle()  # ``old`` is frozen
    made = memory.epoch()
    node = Node()
    gone = weakref.ref(node)
    del node, old  # both garbage now
    assert gone() is not None  # a cycle: reference counting alone does not free it
    memory.release(made)
    assert gone() is None  # made after the freeze: collected
    assert kept() is not None and gc.get_freeze_count() > 0  # frozen, and still so: a collection skips it


def test_an_object_alive_at_a_freeze_is_freed_once_let_go():
    made = memory.epoch()
    node = Node()
    gone = weakref.ref(node)
    memory.settle()  # alive: frozen with the rest
    del node
    gc.collect()
    assert gone() is not None  # a plain collection skips frozen objects: this is what release() must undo
    memory.release(made)
    assert gone() is None
    memory.release(None)  # not known when it was made: treated as frozen, collected all the same
    assert gc.get_freeze_count() == 0


def test_paused_switches_the_collector_off_for_its_block_and_on_again_only_if_it_was_on():
    gc.enable()
    with memory.paused():
        assert not gc.isenabled()
        with memory.paused():  # a block inside another leaves the collector to the outer one
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), memory.paused():
        raise ValueError
    assert gc.isenabled()  # on again after a block that raised
    gc.disable()
    with memory.paused():
        pass
    assert not gc.isenabled()  # off before the block (as in this module's tests): off after it


@pytest.mark.slow
def test_a_training_freezes_while_it_runs_and_a_chat_model_loaded_before_is_freed(demo_home, monkeypatch):
    from lora_core.chat import ChatEngine
    from lora_core.demo import SAMPLE_DATASET
    from lora_core.training import State, TrainConfig, TrainingJob

    monkeypatch.setenv("SIMPLE_LORA_HOME", str(demo_home))
    frozen = []
    settle = memory.settle
    monkeypatch.setattr(memory, "settle", lambda: settle() or frozen.append(gc.get_freeze_count()))
    base = demo_home / "Models" / "LLM" / "demo"
    engine = ChatEngine()
    engine.load_base(base)
    engine.model.held = [engine.model]  # in a cycle, as PEFT's wrapped layers can be
    gone = weakref.ref(engine.model)
    config = TrainConfig(base=str(base), data=str(SAMPLE_DATASET), task="freeze", max_steps=1, batch_size=4,
                         max_length=64, samples=0, eval_rows=0)  # fmt: skip
    snap = TrainingJob(config).run()
    assert snap["state"] == State.COMPLETED, snap["error"]
    assert frozen[0] > 100_000  # during the run torch, transformers and PEFT's objects were skipped by collections
    assert gc.get_freeze_count() == 0  # given back when it ended: nothing frozen outlives a run
    assert gone() is not None  # the chat model is still loaded
    engine.unload()
    assert gone() is None
