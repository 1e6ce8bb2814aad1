"""``python -m runner``: the ``ackflow`` command, where the console script is not on PATH."""

from runner.ops.cli import cli

cli()
