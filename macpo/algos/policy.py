"""Action selection for the Collector, one timestep at a time from a shared recurrent agent network.

``EpsilonGreedyPolicy``: value-based exploration (ε-greedy over utilities; ε = 0 is greedy).
``CategoricalPolicy``: policy-gradient exploration (sample the actor's softmax over available
actions, optionally mixed with an ε-uniform floor; ``greedy=True`` takes its argmax).
Both satisfy ``macpo.rollout.Policy``, which is all the Collector asks for.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from macpo.nn.agent import RNNAgent, agent_inputs


class RecurrentAgentPolicy:
    """Steps a recurrent agent network (inputs obs ⊕ last action ⊕ agent id) and carries its hidden state."""

    def __init__(self, agent: RNNAgent, n_agents: int, n_actions: int):
        self.agent, self.n_agents, self.n_actions = agent, n_agents, n_actions

    def reset(self, batch_size: int) -> None:
        self.hidden = None
        dev = next(self.agent.parameters()).device
        self.last_actions = torch.full((batch_size, self.n_agents), -1, dtype=torch.long, device=dev)  # none yet

    def agent_outputs(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, N, O] → the network's outputs [B, N, A] for this step (hidden state advanced)."""
        inputs = agent_inputs(obs, self.last_actions, self.n_actions)[:, None]  # [B, 1, N, I]
        out, self.hidden = self.agent(inputs, self.hidden)
        return out[:, 0]

    def act(self, obs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        actions = self.choose(self.agent_outputs(obs), avail)  # [B, N]
        self.last_actions = actions
        return actions

    def choose(self, outputs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """outputs [B, N, A], avail [B, N, A] bool → actions [B, N] long."""
        raise NotImplementedError


class EpsilonGreedyPolicy(RecurrentAgentPolicy):
    """Greedy over each agent's available utilities, a uniform available action with probability ε.

    ``epsilon`` is a callable so the schedule is read at each episode batch (0 → greedy).
    """

    def __init__(self, agent: RNNAgent, n_agents: int, n_actions: int, epsilon: Callable[[], float]):
        super().__init__(agent, n_agents, n_actions)
        self.epsilon = epsilon

    def reset(self, batch_size: int) -> None:
        super().reset(batch_size)
        self.eps = float(self.epsilon())

    @torch.no_grad()
    def act(self, obs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        return super().act(obs, avail)

    def choose(self, q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        b, n = q.shape[:2]
        actions = q.masked_fill(~avail, float("-inf")).argmax(-1)  # [B, N]
        if self.eps > 0:
            random_actions = torch.multinomial(avail.float().view(b * n, -1), 1).view(b, n)
            explore = torch.rand(b, n, device=q.device) < self.eps
            actions = torch.where(explore, random_actions, actions)
        return actions


def available_softmax(logits: torch.Tensor, avail: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    """Softmax of ``logits`` [..., A] over the available actions (``avail`` bool), mixed with
    ε·uniform over them: (1 − ε)·softmax + ε/|available|. Unavailable actions get probability 0."""
    probs = torch.softmax(logits.masked_fill(~avail, float("-inf")), dim=-1)
    if epsilon > 0:
        uniform = avail.to(probs.dtype) / avail.sum(-1, keepdim=True).clamp_min(1).to(probs.dtype)
        probs = (1 - epsilon) * probs + epsilon * uniform
    return probs.masked_fill(~avail, 0.0)


class CategoricalPolicy(RecurrentAgentPolicy):
    """Samples each agent's action from the actor's distribution over its available actions.

    The actor outputs logits [B, N, A]; ``epsilon`` (a callable, read per episode batch) mixes in
    a uniform floor as pymarl's actor-critic controllers do; ``greedy=True`` takes the most
    probable available action (evaluation).
    """

    def __init__(
        self,
        actor: RNNAgent,
        n_agents: int,
        n_actions: int,
        epsilon: Callable[[], float] = lambda: 0.0,
        greedy: bool = False,
    ):
        super().__init__(actor, n_agents, n_actions)
        self.epsilon, self.greedy = epsilon, greedy

    def reset(self, batch_size: int) -> None:
        super().reset(batch_size)
        self.eps = float(self.epsilon())

    @torch.no_grad()
    def act(self, obs: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        return super().act(obs, avail)

    def choose(self, logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        b, n, a = logits.shape
        if self.greedy:
            return logits.masked_fill(~avail, float("-inf")).argmax(-1)  # [B, N]
        probs = available_softmax(logits, avail, self.eps)  # [B, N, A]
        return torch.multinomial(probs.view(b * n, a), 1).view(b, n)
