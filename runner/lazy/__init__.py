"""Lazy tasks, at their public path: ``from runner.lazy import defer, Deferred``.

The code lives in runner.define.lazy; this path is public API and stays (unlike the
deprecated aliases at the other old paths). A package rather than a module so that git
records ``runner/lazy.py`` as renamed to ``runner/define/lazy.py``: edits merged from branches
that still change the old file then land in the new one instead of conflicting here.
"""

from runner.define.lazy import *  # noqa: F403 - every public name, including ones added later
