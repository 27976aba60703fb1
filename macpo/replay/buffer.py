"""EpisodeBuffer: a preallocated circular store of whole episodes on one device."""

from __future__ import annotations

import torch

from macpo.envs.base import EnvInfo


def episode_layout(info: EnvInfo) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-field shape (after the leading [K, T+1]) and storage dtype of an episode batch."""
    action_dtype = torch.uint8 if info.n_actions <= 255 else torch.int16
    return {
        "obs": ((info.n_agents, info.obs_shape), info.obs_dtype),
        "state": ((info.state_shape,), info.obs_dtype),
        "avail_actions": ((info.n_agents, info.n_actions), torch.bool),
        "actions": ((info.n_agents,), action_dtype),
        "reward": ((), torch.float32),
        "terminated": ((), torch.bool),
        "filled": ((), torch.bool),
    }


class EpisodeBuffer:
    """Capacity in episodes; each episode occupies T+1 = episode_limit+1 timesteps.

    Storage dtypes are per field (observations as uint8 for 0/1 grids, float16 for SMAC), and
    memory is reserved lazily (``torch.empty``) so the resident size grows with what is stored.
    Reading (``gather``) trims the time axis to the longest sampled episode and keeps the storage
    dtypes; indexing (``buffer[idx]``) also casts back to float32 / long.
    """

    def __init__(self, capacity: int, env_info: EnvInfo, device: torch.device | str = "cpu") -> None:
        if capacity <= 0:
            raise ValueError(f"buffer_size must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.info = env_info
        self.device = torch.device(device)
        self.max_t = env_info.episode_limit + 1
        self.layout = episode_layout(env_info)
        self.data = {
            k: torch.empty((self.capacity, self.max_t, *shape), dtype=dt, device=self.device)
            for k, (shape, dt) in self.layout.items()
        }
        self.data["filled"].zero_()
        self.pos = 0  # next slot to write
        self.n_stored = 0

    def __len__(self) -> int:
        return self.n_stored

    def insert(self, episodes: dict[str, torch.Tensor]) -> torch.Tensor:
        """Write K episodes ([K, T+1, ...] each) at the circular position; returns their slots [K]."""
        k = episodes["filled"].shape[0]
        if k > self.capacity:
            raise ValueError(f"cannot insert {k} episodes into a buffer of capacity {self.capacity}")
        slots = (torch.arange(k, device=self.device) + self.pos) % self.capacity  # [K]
        for name, store in self.data.items():
            src = episodes[name].to(self.device)
            t = src.shape[1]
            store[slots, :t] = src.to(store.dtype)
            if t < self.max_t:  # shorter batch: mark the tail empty
                store[slots, t:] = 0
        self.pos = (self.pos + k) % self.capacity
        self.n_stored = min(self.n_stored + k, self.capacity)
        return slots

    def gather(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Episodes at slots ``idx`` [b] in their storage dtypes [b, T'+1, ...], trimmed to the longest.

        What the learners read: they pack the real timesteps first and cast only those rows
        (``macpo.nn.packing``), so no float32 copy of the padded batch is ever made.
        """
        idx = idx.to(self.device)
        filled = self.data["filled"][idx]  # [b, T+1]
        t_len = int(filled.sum(1).max().item()) + 1  # longest episode + its final observation
        t_len = min(max(t_len, 2), self.max_t)
        return {name: store[idx, :t_len] for name, store in self.data.items()}

    def __getitem__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Episodes at slots ``idx`` [b] as float32 / long / bool tensors [b, T'+1, ...]."""
        out = {}
        for name, x in self.gather(idx).items():
            if name == "actions":
                x = x.long()
            elif x.dtype in (torch.uint8, torch.float16, torch.bfloat16):
                x = x.float()
            out[name] = x
        return out

    def nbytes_per_episode(self) -> int:
        """Storage bytes one episode takes (for the float16-vs-float32 memory check)."""
        return sum(v[0].numel() * v.element_size() for v in self.data.values())
