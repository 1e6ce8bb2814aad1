"""Deprecated: import from runner.store.keys (this alias goes after one release).

A package rather than a module so that git records ``runner/keys.py`` as renamed to
``runner/store/keys.py``: edits merged from branches that still change the old file then
land in the new one instead of conflicting here.
"""

from runner.store.keys import *  # noqa: F403 - every public name, including ones added later
