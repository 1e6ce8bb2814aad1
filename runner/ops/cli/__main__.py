"""``python -m runner.ops.cli``: the ``ackflow`` command, for tests and tools without the script."""

from runner.ops.cli import cli

cli()
