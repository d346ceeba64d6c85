"""ringfinder: find fraud rings among the contributors of a work marketplace."""

from __future__ import annotations

__version__ = "0.1.0"

from ringfinder.pipeline import RunResult, find_rings  # noqa: E402

__all__ = ["RunResult", "__version__", "find_rings"]
