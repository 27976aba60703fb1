"""Replay samplers, one concept per file; configs in ``conf/sampler/``."""

from macpo.replay.samplers.base import Sampler
from macpo.replay.samplers.boltzmann import taken_action_probs
from macpo.replay.samplers.discor import DisCorSampler
from macpo.replay.samplers.joint_term import joint_action_level, joint_action_term
from macpo.replay.samplers.macpo import MacpoSampler
from macpo.replay.samplers.macpo_approx import MacpoApproxSampler
from macpo.replay.samplers.per import PerSampler
from macpo.replay.samplers.pser import PserSampler
from macpo.replay.samplers.remern import RemernSampler
from macpo.replay.samplers.uniform import UniformSampler

__all__ = [
    "DisCorSampler",
    "MacpoApproxSampler",
    "MacpoSampler",
    "PerSampler",
    "PserSampler",
    "RemernSampler",
    "Sampler",
    "UniformSampler",
    "joint_action_level",
    "joint_action_term",
    "taken_action_probs",
]
