"""Shared test set-up.

The test models are tiny: one intra-op thread runs them faster than two that contend for the two
cores of a CI machine (measured: the likelihood tests took 52 s with two threads, 18 s with one).
"""

import torch

torch.set_num_threads(1)
