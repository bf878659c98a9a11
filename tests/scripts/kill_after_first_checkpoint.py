"""Run an example script and end its process abruptly (``os._exit``: no clean-up, like ``kill -9``) right after
its first checkpoint is written, for the resume tests in tests/test_resume.py.

Usage: python tests/scripts/kill_after_first_checkpoint.py examples/run_x.py [ARGS ...]
"""

import os
import runpy
import sys

from transformers.trainer_callback import CallbackHandler

KILLED_EXIT_CODE = 137
_on_save = CallbackHandler.on_save


def _on_save_then_die(self, args, state, control):
    control = _on_save(self, args, state, control)
    os._exit(KILLED_EXIT_CODE)


if __name__ == "__main__":
    CallbackHandler.on_save = _on_save_then_die
    sys.argv = sys.argv[1:]
    # As `python examples/run_x.py` does: the script's folder first on the path (for examples/utils_examples.py).
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
    runpy.run_path(sys.argv[0], run_name="__main__")
