"""TensorFlow, imported once and quietly.

TensorFlow 2.21 writes lines from C++ before its logging is initialised: oneDNN
notes, "Could not find cuda drivers", and "failed call to cuInit" on every
machine without a GPU. ``TF_CPP_MIN_LOG_LEVEL`` does not apply to them
(tensorflow/tensorflow#100442), so every job and training run would open with
them. They are held back while TensorFlow loads and sets up its devices, and
written out if that fails (not if Ctrl-C stops it) or ``BOXWEIGHT_VERBOSE`` is set (``--verbose``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from typing import Any

VERBOSE = "BOXWEIGHT_VERBOSE"  # environment variable: show TensorFlow's start-up lines
_lock = threading.Lock()
_ready = False


def tensorflow() -> Any:
    """The ``tensorflow`` module, its start-up lines withheld (see the module doc)."""
    global _ready
    with _lock:
        if not _ready:
            _import(quiet=not os.environ.get(VERBOSE))
            _ready = True
    import tensorflow as tf

    return tf


def _import(quiet: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # what does apply after start-up: INFO and WARNING lines
    if not quiet or "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)  # file descriptor 2: the lines come from C++, not through sys.stderr
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # devices are set up here, with their lines
        except KeyboardInterrupt:  # Ctrl-C while TensorFlow loads (a small job loads it in the launcher): not its failure
            raise
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
