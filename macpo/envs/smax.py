"""JaxMARL's SMAX as a SMAC backend (``env.backend: smax``): B battles against SMAX's heuristic
enemies (``HeuristicEnemySMAX``), batched with ``jax.vmap`` under one ``jax.jit``, handed to torch
through DLPack (no copy when torch and jax share the device; CPU here).

Sizes are SMAX's, not SMAC's (5m_vs_6m: obs 140, state 132, 11 actions): SMAX has no no-op action
(a dead agent's only action is ``stop``), no shields, armour or Medivac (so no MMM / MMM2), its
observation carries other units' last moves and cooldowns, its state no last actions, its reward
is at most about 2 per episode, and an episode lasts at most ``max_steps`` (100) steps.
Our protocol is kept: finished battles stay frozen until ``reset()``, ``battle_won`` is in the
step info, a battle that reaches ``max_steps`` with both sides alive is truncated.

Optional dependency: ``pip install -e ".[smax]"`` (jaxmarl 0.2.0 and six).
"""

from __future__ import annotations

import os

import torch

from macpo.envs.base import BatchedEnv, EnvInfo

INSTALL_HINT = 'pip install -e ".[smax]"  (jaxmarl==0.2.0 and six)'


def _jaxmarl():
    """jaxmarl's SMAX module, or a ValueError saying how to install it."""
    try:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share a GPU with torch
        from jaxmarl.environments import smax
    except ImportError as error:
        raise ValueError(f"env.backend=smax needs JaxMARL ({error}); install it with: {INSTALL_HINT}") from None
    return smax


def smax_maps() -> list[str]:
    """The SMAC maps SMAX has (needs jaxmarl)."""
    return list(_jaxmarl().smax_env.MAP_NAME_TO_SCENARIO)


def check_smax(map_name: str) -> None:
    """ValueError unless jaxmarl is installed and SMAX has ``map_name``."""
    maps = smax_maps()
    if map_name not in maps:
        raise ValueError(
            f"env.backend=smax has no map {map_name!r} (SMAX has no Medivac, so no MMM/MMM2); "
            f"SMAX's maps: {', '.join(maps)}; or use env.backend=lite"
        )


class SmaxEnv(BatchedEnv):
    """B lock-step SMAX battles of one map with heuristic enemies; see the module docstring.

    Args:
        map_name: a map of ``smax_maps()``.
        n_envs: number of parallel battles B.
        device: torch device of the returned tensors.
        seed: seed of the JAX key (``None``: drawn from torch's generator).
        **smax_kwargs: passed to ``HeuristicEnemySMAX`` (e.g. ``attack_mode``, ``max_steps``).
    """

    def __init__(self, map_name: str, n_envs: int = 1, device: str | torch.device = "cpu",
                 seed: int | None = None, **smax_kwargs):  # fmt: skip
        if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs <= 0:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        check_smax(map_name)
        import jax
        import jax.numpy as jnp

        smax = _jaxmarl()
        self._jax, self._jnp = jax, jnp
        self.map_name = map_name
        self.n_envs = n_envs
        self.device = torch.device(device)
        env = smax.HeuristicEnemySMAX(scenario=smax.map_name_to_scenario(map_name), **smax_kwargs)
        self._smax = env
        n, e = env.num_allies, env.num_enemies
        self.n_agents, self.n_enemies = n, e
        agents = env.agents
        obs_size = env.observation_spaces[agents[0]].shape[0]
        self._env_info = EnvInfo(
            n_agents=n,
            n_actions=int(env.action_spaces[agents[0]].n),
            obs_shape=int(obs_size),
            state_shape=int(env.reset(jax.random.PRNGKey(0))[0]["world_state"].shape[-1]),
            episode_limit=int(env.max_steps),
        )

        def status(inner):  # (ended, truncated, won) of one battle's SMAX state
            ally_alive, enemy_alive = inner.unit_alive[:n], inner.unit_alive[n:]
            ended = ~ally_alive.any() | ~enemy_alive.any()
            return ended, ~ended & (inner.step >= env.max_steps), ally_alive.any() & ~enemy_alive.any()

        def observe(state):  # one battle -> (obs [N, O], state [S], avail [N, A], flags [3], dead [2])
            obs = env.get_obs(state)
            avail = env.get_avail_actions(state)
            inner = state.state
            dead = jnp.stack([(~inner.unit_alive[:n]).sum(), (~inner.unit_alive[n:]).sum()]).astype(jnp.int32)
            return (
                jnp.stack([obs[a] for a in agents]).astype(jnp.float32),
                env.get_world_state(state).astype(jnp.float32),
                jnp.stack([avail[a] for a in agents]).astype(jnp.uint8),
                jnp.stack(status(inner)).astype(jnp.uint8),
                dead,
            )

        def strong(state):  # fixed dtypes (no weak types), so reset and step states share one compiled step
            return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), state)

        def reset_one(key):
            _, state = env.reset(key)
            state = strong(state)
            return state, observe(state)

        def step_one(key, state, actions):  # actions [N] int32; a finished battle stays frozen
            ended, truncated, _ = status(state.state)
            active = ~ended & ~truncated
            _, stepped, rewards, _, _ = env.step_env(key, state, {a: actions[i] for i, a in enumerate(agents)})
            state = strong(jax.tree.map(lambda new, old: jnp.where(active, new, old), stepped, state))
            reward = jnp.where(active, jnp.stack([rewards[a] for a in agents]).mean(), 0.0)
            return state, observe(state), reward.astype(jnp.float32)

        def reset_all(key):  # the key stays a jit output, like step_all's: one compiled step for both
            key, sub = jax.random.split(key)
            state, view = jax.vmap(reset_one)(jax.random.split(sub, n_envs))
            return key, state, view

        def step_all(key, state, actions):
            key, sub = jax.random.split(key)
            state, view, reward = jax.vmap(step_one)(jax.random.split(sub, n_envs), state, actions)
            return key, state, view, reward

        self._reset_all = jax.jit(reset_all)
        self._step_all = jax.jit(step_all)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        self._key = jax.random.PRNGKey(int(seed))
        self.reset()
        # compile now: jit traces step_all once for arguments coming from reset and once for arguments
        # coming from a step (their arrays differ in placement metadata), so two throw-away steps
        # keep both compiles out of the episodes
        no_op = jax.dlpack.from_dlpack(torch.full((n_envs, n), env.num_movement_actions - 1, dtype=torch.int32))
        key, stepped, _, _ = self._step_all(self._key, self._state, no_op)
        self._step_all(key, stepped, no_op)

    @property
    def env_info(self) -> EnvInfo:
        return self._env_info

    def _torch(self, array) -> torch.Tensor:
        """A jax array as a torch tensor on ``self.device`` (DLPack: no copy on a shared device)."""
        return torch.from_dlpack(array).to(self.device)

    def _read(self, view) -> None:
        obs, state, avail, flags, dead = (self._torch(x) for x in view)
        self._obs, self._state_t, self._avail = obs, state, avail.bool()
        self._flags, self._dead = flags.bool(), dead.long()

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        jax = self._jax
        if seed is not None:
            self._key = jax.random.PRNGKey(int(seed))
        self._key, self._state, view = self._reset_all(self._key)
        self._read(view)
        return self._obs, self._state_t, self._avail

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        b, n = self.n_envs, self.n_agents
        if tuple(actions.shape) != (b, n):
            raise ValueError(f"actions must have shape [n_envs, n_agents] = [{b}, {n}], got {tuple(actions.shape)}")
        act = actions.detach().to(torch.int32)
        if self._jax.default_backend() == "cpu":
            act = act.cpu()
        act = self._jax.dlpack.from_dlpack(act.contiguous())
        self._key, self._state, view, reward = self._step_all(self._key, self._state, act)
        self._read(view)
        ended, truncated, won = self._flags.unbind(-1)
        info = {"battle_won": won, "dead_allies": self._dead[:, 0], "dead_enemies": self._dead[:, 1]}
        return self._torch(reward), ended, truncated, info

    def get_obs(self) -> torch.Tensor:
        return self._obs  # [B, N, O]

    def get_state(self) -> torch.Tensor:
        return self._state_t  # [B, S]

    def get_avail_actions(self) -> torch.Tensor:
        return self._avail  # [B, N, A] bool
