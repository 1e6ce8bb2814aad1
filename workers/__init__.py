"""The worker process runtime: consume task requests, execute them, publish results."""

from workers.runtime import Worker

__all__ = ["Worker"]
