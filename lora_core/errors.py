"""Typed errors of the core.

Every error carries a stable ``code`` and the ``params`` that locate it (row, field, file, ...), so
the UI can translate it, and an English sentence for the CLI and logs. The core never returns UI text.
"""

from __future__ import annotations

from typing import Any


class SimpleLoraError(Exception):
    """Base of all errors a user can cause or fix. ``str(err)`` is one readable sentence."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, **params: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.params = params

    @property
    def message(self) -> str:
        return str(self.args[0])


class DatasetError(SimpleLoraError):
    """A dataset file cannot be read or used as a whole (not JSON, empty, wrong shape, invalid rows...)."""

    code = "dataset"


class TemplateError(SimpleLoraError):
    """A tokenizer's chat template cannot be used for response-only masking."""

    code = "template"


class ModelError(SimpleLoraError):
    """A base model folder or adapter folder cannot be used."""

    code = "model"


class PathError(SimpleLoraError):
    """A name or path would leave its root folder, or does not exist where it must."""

    code = "path"
