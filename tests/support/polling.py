"""Bounded waiting for the integration tests: poll until true or fail."""

import time


def wait_until(predicate, timeout=20.0, interval=0.05, what="condition"):
    """The predicate's first truthy value; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
