"""ringfinder: find fraud rings among the contributors of a work marketplace."""

from __future__ import annotations

__version__ = "0.1.0"
