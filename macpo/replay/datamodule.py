"""ReplayDataModule: the EpisodeBuffer plus its sampler, served to Lightning's fit loop.

Lightning fetches the next batch *before* running the current step. If the DataLoader
sampled the buffer, every batch would miss the episodes collected in the step before it and
the priorities that step wrote. So the DataLoader here only paces the loop (it yields tick
numbers) and the algorithm samples inside ``training_step`` via ``sample()``: no lag.
"""

from __future__ import annotations

import itertools

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from macpo.envs.base import EnvInfo
from macpo.replay.buffer import EpisodeBuffer
from macpo.replay.samplers.base import Sampler


class TickStream(IterableDataset):
    """An endless stream of step numbers: one fit-loop iteration each."""

    def __iter__(self):
        return itertools.count()


class ReplayDataModule(pl.LightningDataModule):
    def __init__(
        self,
        env_info: EnvInfo,
        sampler: Sampler,
        buffer_size: int,
        batch_size: int,
        device: torch.device | str = "cpu",
        save_buffer: bool = True,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if batch_size > buffer_size:
            raise ValueError(f"batch_size ({batch_size}) exceeds the buffer capacity buffer_size ({buffer_size})")
        self.batch_size = batch_size
        self.buffer = EpisodeBuffer(buffer_size, env_info, device)
        self.sampler = sampler
        self.sampler.attach(buffer_size, device)
        #: whether checkpoints carry the buffer and the sampler's priorities (``checkpoint.save_buffer``)
        self.save_buffer = save_buffer

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TickStream(), batch_size=None)

    def insert(self, episodes: dict[str, torch.Tensor]) -> torch.Tensor:
        slots = self.buffer.insert(episodes)
        self.sampler.on_insert(slots)
        return slots

    def ready(self) -> bool:
        """Warm-up: learning starts once the buffer holds ``batch_size`` episodes."""
        return len(self.buffer) >= self.batch_size

    def sample(self, progress: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Slots [b], the episodes at them (storage dtypes: see ``EpisodeBuffer.gather``), and
        their importance weights [b]."""
        idx, is_weights = self.sampler.sample(self.batch_size, len(self.buffer), progress)
        return idx, self.buffer.gather(idx), is_weights

    # Lightning checkpoint hooks: the buffer and the sampler's stored priorities travel with the
    # model unless ``save_buffer`` is false; a run resumed without them refills the buffer from
    # scratch (learning waits for ``batch_size`` new episodes) with the restored networks.
    def state_dict(self) -> dict:
        if not self.save_buffer:
            return {"buffer": None}
        # the real timesteps of the stored episodes only, packed fields as bits (``EpisodeBuffer.state_dict``)
        return {"buffer": self.buffer.state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        buf = state.get("buffer")
        if buf is None:
            return
        self.buffer.load_state_dict(buf)  # also reads the unpacked layout of checkpoints before bit packing
        if "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
