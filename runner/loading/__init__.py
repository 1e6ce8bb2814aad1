"""Deprecated: import from runner.define.loading (this alias goes after one release).

A package rather than a module so that git records ``runner/loading.py`` as renamed to
``runner/define/loading.py``: edits merged from branches that still change the old file then
land in the new one instead of conflicting here.
"""

from runner.define.loading import *  # noqa: F403 - every public name, including ones added later
