"""Import an example or dataset script (they are files, not modules of the package) for in-process tests."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_script(relative: str):
    """The script as a module, loaded once per test session (pickling needs one class per name)."""
    name = Path(relative).stem
    if name in sys.modules:
        return sys.modules[name]
    # As `python examples/run_x.py` does: the script's folder is on the path, so its sibling helpers import.
    folder = str((REPO / relative).parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    # Registered so Trainer can pickle the script's TrainingArguments subclass.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
