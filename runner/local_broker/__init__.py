"""Deprecated: import from runner.broker.local (this alias goes after one release).

A package rather than a module so that git records ``runner/local_broker.py`` as renamed to
``runner/broker/local.py``: edits merged from branches that still change the old file then
land in the new one instead of conflicting here.
"""

from runner.broker.local import *  # noqa: F403 - every public name, including ones added later
