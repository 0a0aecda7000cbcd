"""One workspace per user: every event handler of the page runs in the workspace of the user who sent the event.

With several users (``--auth-file`` listing more than one), ``bind_workspaces`` wraps each handler so that Gradio
hands it the request, and the handler's code runs inside ``lora_core.paths.as_user(request.username)``: that
user's adapters, runs, uploads, assistants, chat model and trainings, and the shared base models. With one
password (or none) nothing is wrapped and there is one shared workspace.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from lora_core import paths


def user_of(request: Any) -> str | None:
    return getattr(request, "username", None) or None


def in_workspace_of_request(fn: Callable) -> Callable:
    """``fn`` with a leading ``gr.Request`` parameter (which Gradio fills in) whose body runs in that request's
    user's workspace. A generator stays a generator, and each of its steps runs in the workspace."""
    signature = inspect.signature(fn)
    request = inspect.Parameter("workspace_request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)

    if inspect.isgeneratorfunction(fn):

        def wrapper(workspace_request: gr.Request, *args: Any, **kwargs: Any) -> Iterator[Any]:
            user = user_of(workspace_request)
            with paths.as_user(user):
                steps = fn(*args, **kwargs)
            while True:
                with paths.as_user(user):
                    try:
                        step = next(steps)
                    except StopIteration:
                        return
                yield step

    else:

        def wrapper(workspace_request: gr.Request, *args: Any, **kwargs: Any) -> Any:
            with paths.as_user(user_of(workspace_request)):
                return fn(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[request, *signature.parameters.values()])
    wrapper.__annotations__ = {"workspace_request": gr.Request}
    wrapper.__name__ = getattr(fn, "__name__", "handler")
    wrapper.__doc__ = fn.__doc__
    return wrapper


def bind_workspaces(blocks: gr.Blocks) -> int:
    """Wrap every Python handler of ``blocks`` (see ``in_workspace_of_request``); returns how many."""
    wrapped = 0
    for block_fn in blocks.fns.values():
        if block_fn.fn is not None and not inspect.iscoroutinefunction(block_fn.fn):
            block_fn.fn = in_workspace_of_request(block_fn.fn)
            wrapped += 1
    return wrapped
