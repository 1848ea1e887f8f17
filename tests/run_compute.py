"""Run by torchrun in test_distributed.py: one rank of `sitegen compute` with a small chunk size."""

import os
import sys

from sitegen import pipeline
from sitegen.config import load

pipeline.CHUNK = int(os.environ["SITEGEN_TEST_CHUNK"])
manifest, computed = pipeline.compute(load(sys.argv[1]), sys.argv[2], quiet=True)
print(os.environ["RANK"], computed)
