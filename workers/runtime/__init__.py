"""Deprecated: import from workers.loop (this alias goes after one release).

A package rather than a module so that git records ``workers/runtime.py`` as renamed to
``workers/loop.py``: edits merged from branches that still change the old file then land in
the new one instead of conflicting here.
"""

from workers.loop import *  # noqa: F403 - every public name, including ones added later
