"""Example flows: the demo (`make demo`) and the flows the README shows."""
