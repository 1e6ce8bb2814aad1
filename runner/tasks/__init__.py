"""Deprecated: import from runner.define.tasks (this alias goes after one release).

A package rather than a module so that git records ``runner/tasks.py`` as renamed to
``runner/define/tasks.py``: edits merged from branches that still change the old file then
land in the new one instead of conflicting here.
"""

from runner.define.tasks import *  # noqa: F403 - every public name, including ones added later
