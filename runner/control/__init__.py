"""Deprecated: import from runner.decide.control (this alias goes after one release).

A package rather than a module so that git records ``runner/control.py`` as renamed to
``runner/decide/control.py``: edits merged from branches that still change the old file then
land in the new one instead of conflicting here.
"""

from runner.decide.control import decide_cancel, decide_pause, decide_resume, decide_retry, resume_map

__all__ = ["decide_cancel", "decide_pause", "decide_resume", "decide_retry", "resume_map"]
