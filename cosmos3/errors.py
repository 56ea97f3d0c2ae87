"""The one base class of every error the library raises on bad input, files or settings.

``Cosmos3Error`` derives from ``ValueError``, so code that caught ``ValueError`` keeps working; catch
``Cosmos3Error`` to tell the library's refusals from anything else. The specific types live next to the
code that raises them (``SizeError`` in :mod:`cosmos3.geometry`, ``ConfigError`` in
:mod:`cosmos3.model.config`, ...).
"""

from __future__ import annotations


class Cosmos3Error(ValueError):
    """Base of every error raised by :mod:`cosmos3` on bad input, files or settings."""
