"""Where an algorithm's training episodes come from, as its class declares (``on_policy``).

Off-policy methods sample the replay DataModule (buffer + sampler). On-policy methods train on
the episodes just collected, once, with no replay buffer: ``OnPolicyDataModule`` has the
DataModule's interface (``insert``/``ready``/``sample``) so the fit loop is the same for both.
``make_datamodule`` is what the entry point calls; the class's ``datamodule`` builds the path.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from macpo.envs.base import EnvInfo
from macpo.replay.datamodule import TickStream
from macpo.replay.samplers.base import Sampler


class OnPolicyDataModule(pl.LightningDataModule):
    """Holds the latest collected batch of episodes until the learner takes it (then forgets it)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.device = torch.device(device)
        self.latest: dict[str, torch.Tensor] | None = None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TickStream(), batch_size=None)

    def insert(self, episodes: dict[str, torch.Tensor]) -> torch.Tensor:
        self.latest = {k: v.to(self.device) for k, v in episodes.items()}
        return torch.arange(episodes["filled"].shape[0], device=self.device)  # [B]

    def ready(self) -> bool:
        return self.latest is not None

    def sample(self, progress: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """The episodes just collected [B, T+1, ...], their positions [B] and unit importance weights [B]."""
        if self.latest is None:
            raise RuntimeError("no episodes collected since the last update")
        batch, self.latest = self.latest, None
        b = batch["filled"].shape[0]
        return torch.arange(b, device=self.device), batch, torch.ones(b, device=self.device)

    def state_dict(self) -> dict:
        return {}  # nothing outlives an update

    def load_state_dict(self, state: dict) -> None:
        pass


def make_datamodule(
    algo_cls: type,
    env_info: EnvInfo,
    sampler: Sampler,
    buffer_size: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    save_buffer: bool = True,
) -> pl.LightningDataModule:
    """The data path ``algo_cls`` declares (``MarlAlgorithm.datamodule``), once the sampler suits it."""
    problem = algo_cls.sampler_problem(sampler)
    if problem:
        raise ValueError(problem)
    return algo_cls.datamodule(env_info, sampler, buffer_size, batch_size, device, save_buffer=save_buffer)
