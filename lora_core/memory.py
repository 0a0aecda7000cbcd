"""Python's cycle collector around imports, trainings and loaded models.

A full collection (``gc.collect()``) walks every object Python tracks. Once torch, transformers and PEFT are
imported that is about half a million objects, 0.2 s on 2 cores, paid by every explicit collection (freeing a model
before the next one is loaded) and by every automatic full collection during a training: 12 collections took
1.6 s of the demo training's 21 s (``BENCHMARKS.md``, "Per-step and per-run overhead").

``settle()``, called when a training starts (its imports done), collects once and moves what is alive then into
the permanent generation (``gc.freeze()``): later collections skip those objects. What is made afterwards (the
training's model and trainer, a chat model loaded later) is collected as before. ``release(made)`` collects after
a model is let go: a plain collection when the model was made after the last ``settle()``; otherwise the frozen
objects are given back to the collector first (``gc.unfreeze()``), so that a model alive at a freeze is not kept
for ever once it is garbage. The freeze lasts for the training only: when it ends (completed, stopped or failed)
it releases with ``None``, so what was alive at its start (the job itself, a model an export or an import held
then) is collected again once it is garbage.

``paused()`` switches the collector off while the stack is imported or a model is loaded (see its docstring).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_epoch = 0


@contextmanager
def paused() -> Iterator[None]:
    """The cycle collector paused for a block that makes many long-lived objects and little garbage: importing
    torch, transformers, PEFT or Gradio (hundreds of thousands of objects), loading a model, building the page.
    The automatic collections such a block sets off free almost nothing: they took 10-16% of the imports' time
    (``BENCHMARKS.md``, "Start-up"). The collector is switched back on after the block if it was on before it
    (a block inside another, or in another thread at the same time, leaves it to the outer one)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def epoch() -> int:
    """How many times ``settle()`` has frozen the live objects: what is made while this stays the same is not
    frozen."""
    return _epoch


def settle() -> None:
    """Collect, then freeze what is alive (imported modules, classes, functions), so later collections skip it."""
    global _epoch
    gc.collect()
    gc.freeze()
    _epoch += 1


def release(made: int | None) -> None:
    """Collect the garbage left by letting go of objects made at ``epoch() == made`` (None: not known)."""
    if made is None or made != _epoch:
        gc.unfreeze()
    gc.collect()
