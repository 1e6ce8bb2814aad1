"""The worker process runtime: consume task requests, execute them, publish results."""

from workers.loop import Worker

__all__ = ["Worker"]
