"""Stand-in for the part of ComfyUI's ``server`` module the pack uses: ``PromptServer.instance``.

Like ComfyUI 0.3.64: ``send_sync(event, data, sid=None)`` queues a websocket message for the client ``sid``
(every client when ``None``); ``send_progress_text(text, node_id, sid=None)`` sends the binary progress-text
message (type 3: 4-byte big-endian node-id length, node id, UTF-8 text) that the frontend shows on the node.
``client_id`` is the client of the prompt being executed. Additionally every message is appended to
``messages`` (``{"event", "data", "sid"}``; progress text as ``{"event": "progress_text", "node", "text"}``).
"""

from __future__ import annotations

import struct

BINARY_TEXT = 3  # server.BinaryEventTypes.TEXT


class PromptServer:
    instance: PromptServer | None = None

    def __init__(self):
        PromptServer.instance = self
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.messages: list[dict] = []

    def send_sync(self, event, data, sid=None) -> None:
        self.messages.append({"event": event, "data": data, "sid": sid})

    def send_progress_text(self, text, node_id, sid=None) -> None:
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        node = str(node_id).encode("utf-8")
        packed = struct.pack(">I", len(node)) + node + raw
        self.messages.append({"event": "progress_text", "node": str(node_id), "text": raw.decode("utf-8"),
                              "sid": sid, "binary": (BINARY_TEXT, packed)})


def _reset() -> None:
    PromptServer()
