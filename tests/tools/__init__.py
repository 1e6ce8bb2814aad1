"""Developer tools that are not tests: run as ``python -m tests.tools.<name>``."""
