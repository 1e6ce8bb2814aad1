"""Lazy tasks, at their public path: ``from runner.lazy import defer, Deferred``.

The code lives in `runner.define.lazy`; this path is public API and stays.
"""

from runner.define.lazy import Deferred, defer

__all__ = ["Deferred", "defer"]
