"""What kube-sim and the node agent both do first as a process: one log
format on stderr, and the state directory made and resolved."""

import logging
import sys


def begin(log_level, state_dir):
    """Configures logging at `log_level`; returns `state_dir` resolved, made
    if missing."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    return state_dir
