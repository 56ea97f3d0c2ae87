"""Stand-in for ``comfy_execution.utils``: which node is executing (ComfyUI 0.3.64 sets it around every
node's ``execute``; progress bars and our warnings read it)."""

from __future__ import annotations

import contextvars
from typing import NamedTuple


class ExecutionContext(NamedTuple):
    prompt_id: str
    node_id: str
    list_index: int | None


current_executing_context: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "current_executing_context", default=None
)


def get_executing_context() -> ExecutionContext | None:
    return current_executing_context.get(None)


class CurrentNodeContext:
    """``with CurrentNodeContext(prompt_id, node_id):`` — what the executor wraps a node's execution in."""

    def __init__(self, prompt_id: str, node_id: str, list_index: int | None = None):
        self.context = ExecutionContext(prompt_id=prompt_id, node_id=node_id, list_index=list_index)
        self.token = None

    def __enter__(self):
        self.token = current_executing_context.set(self.context)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        if self.token is not None:
            current_executing_context.reset(self.token)
