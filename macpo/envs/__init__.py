"""Batched multi-agent environments on torch tensors, and adapters."""

from macpo.envs.base import BatchedEnv, EnvInfo

__all__ = ["BatchedEnv", "EnvInfo"]
