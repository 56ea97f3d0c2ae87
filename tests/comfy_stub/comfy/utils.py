"""Stand-in for the parts of ``comfy.utils`` the pack uses: ``ProgressBar`` and its global hook.

Like ComfyUI: a ``ProgressBar`` captures ``PROGRESS_BAR_HOOK`` when it is *constructed*; ``update_absolute``
clamps the value to the total and calls the hook (if any) with ``(value, total, preview, node_id=...)``.
Without a hook (outside the server) it does nothing visible. Additionally every ``update_absolute`` is
appended to ``progress_calls`` for assertions.
"""

from __future__ import annotations

PROGRESS_BAR_ENABLED = True
PROGRESS_BAR_HOOK = None
progress_calls: list[dict] = []


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function) -> None:
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


def _reset() -> None:
    set_progress_bar_global_hook(None)
    set_progress_bar_enabled(True)
    progress_calls.clear()


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        progress_calls.append({"bar": self, "value": value, "total": self.total, "preview": preview,
                               "node_id": self.node_id})
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)
