"""Replay samplers, one concept per file; configs in ``conf/sampler/``."""

from macpo.replay.samplers.base import Sampler
from macpo.replay.samplers.uniform import UniformSampler

__all__ = ["Sampler", "UniformSampler"]
