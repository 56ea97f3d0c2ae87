"""Reading the small JSON side files of a checkpoint (configs, indexes) with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: str | Path, error: type[Exception], what: str) -> dict[str, Any]:
    """Parse ``path`` (UTF-8) as a JSON object.

    Every failure raises ``error`` naming the file and ``what`` it was meant to be: missing
    (``"<path>: <what> file not found"``), unreadable or invalid JSON, or a JSON value that is not an object.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: unreadable {what} JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: {what} must be a JSON object")
    return data
