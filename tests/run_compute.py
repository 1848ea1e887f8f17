"""Run by torchrun in test_distributed.py: one rank of `sitegen compute` with a small chunk size."""

import os
import sys

from sitegen.config import load
from sitegen.pipeline.runner import compute
from sitegen.pipeline.stages import activations

activations.CHUNK = int(os.environ["SITEGEN_TEST_CHUNK"])
manifest, computed = compute(load(sys.argv[1]), sys.argv[2], quiet=True)
print(os.environ["RANK"], computed)
