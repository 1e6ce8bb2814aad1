"""Deprecated: import from runner.store.memory (this alias goes after one release).

A package rather than a module so that git records ``runner/memory_store.py`` as renamed to
``runner/store/memory.py``: edits merged from branches that still change the old file then
land in the new one instead of conflicting here.
"""

from runner.store.memory import *  # noqa: F403 - every public name, including ones added later
