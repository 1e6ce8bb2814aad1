"""Deprecated: import from runner.define.context (this alias goes after one release).

A package rather than a module so that git records ``runner/context.py`` as renamed to
``runner/define/context.py``: edits merged from branches that still change the old file then
land in the new one instead of conflicting here.
"""

from runner.define.context import *  # noqa: F403 - every public name, including ones added later
