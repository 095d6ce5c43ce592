"""Working with the trainers people use: the public imports, KerasHub, TFDS, Model Garden's decoder."""

from __future__ import annotations

import subprocess
import sys


def test_weighting_exports_the_input_function_and_losses_and_loads_tensorflow_only_when_they_are_used():
    code = (
        "import sys, weighting\n"
        "from weighting import ClassCounts, class_weights\n"
        "class_weights(ClassCounts(boxes={'a': 3, 'b': 1}), 'inverse')\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'loaded by the schemes'\n"
        "from weighting import create_input_fn, WeightedSigmoidFocalLoss, ReweightSpec, JobOutput\n"
        "assert 'tensorflow' in sys.modules\n"
        "import weighting.input_fn, weighting.losses\n"
        "assert create_input_fn is weighting.input_fn.create_input_fn and WeightedSigmoidFocalLoss is weighting.losses.WeightedSigmoidFocalLoss\n"
        "assert set(weighting.__all__) <= set(dir(weighting))\n"
        "try:\n"
        "    weighting.nope\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "module 'weighting' has no attribute 'nope'"
