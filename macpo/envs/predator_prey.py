"""Predator-prey with relative overgeneralisation (the paper's §5.2.1), batched on torch.

The rules are those of ``docs/predator_prey.md`` (Böhmer et al.'s stag hunt as
configured by the public MAC-PO code): predators move one at a time in a fresh random order,
then each living prey, in random order, is captured by >= 2 adjacent agents that chose
``catch`` (+10, prey and catchers removed), punishes a lone catcher (reward ``p`` once per
prey), or else moves to a random free neighbouring cell.

All B envs advance together. Positions are flat indices into a grid padded by ``PAD`` cells
on every side, so that (a) moves off the grid hit permanently occupied border cells and fail
without bound checks and (b) every 5x5 observation window is in range of one gather. The
only Python loops in ``step`` run over the agents' move-order positions and over the prey's
order, because the rules make those moves sequential; each iteration handles all B envs.

Layouts (channel last, as the reference's ``[rows, cols, channels]`` grids):
- observation [B, N, 75]: index ``(dr * 5 + dc) * 3 + ch`` with ``dr, dc`` in 0..4 the offset
  from the window's top-left (agent at (2, 2)) and ``ch`` 0 agents, 1 stags, 2 hares.
- state [B, H * W * 3]: index ``(row * W + col) * 3 + ch``.
Hares do not exist here; their channel is always 0 (kept for the reference's dimensions).
"""

from __future__ import annotations

import torch

from macpo.envs.base import BatchedEnv, EnvInfo

RIGHT, DOWN, LEFT, UP, STAY, CATCH = range(6)
N_ACTIONS = 6
N_CHANNELS = 3  # agents, stags, hares
CAPTURE_REWARD = 10.0
MIN_CATCHERS = 2
SIGHT = 2  # observation radius: a (2*SIGHT+1)^2 window
PAD = SIGHT  # border width of the padded grid (>= 1 for the move checks, >= SIGHT for obs)


class PredatorPrey(BatchedEnv):
    """B lock-step predator-prey episodes; see the module docstring for the rules and layouts.

    Args:
        n_envs: number of parallel episodes B.
        device: torch device of every tensor (and of the random generator).
        seed: seed of the env's generator; ``None`` draws a nondeterministic one.
        grid_size: side of the square, bounded grid.
        n_agents: predators N (the learning agents).
        n_prey: stags P.
        punishment: reward p <= 0 added once per prey caught by a single agent.
        episode_limit: steps after which an episode is truncated.
    """

    def __init__(
        self,
        n_envs: int,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        grid_size: int = 10,
        n_agents: int = 8,
        n_prey: int = 8,
        punishment: float = 0.0,
        episode_limit: int = 200,
    ):
        for name, value in [
            ("n_envs", n_envs),
            ("env.grid_size", grid_size),
            ("env.n_agents", n_agents),
            ("env.n_prey", n_prey),
            ("env.episode_limit", episode_limit),
        ]:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if n_agents + n_prey > grid_size * grid_size:
            raise ValueError(
                f"env.grid_size={grid_size} has {grid_size * grid_size} cells, too few for "
                f"env.n_agents={n_agents} + env.n_prey={n_prey} entities"
            )
        if punishment > 0:
            raise ValueError(f"env.punishment must be <= 0 (a penalty for a lone catch), got {punishment}")

        self.n_envs = n_envs
        self.device = torch.device(device)
        self.grid_size = grid_size
        self.n_agents = n_agents
        self.n_prey = n_prey
        self.punishment = float(punishment)
        self.episode_limit = episode_limit
        self._generator = torch.Generator(device=self.device)
        self._seed(seed)

        side = grid_size + 2 * PAD
        self._side = side  # padded side length
        dev = self.device
        rows = torch.arange(side, device=dev)
        inside_1d = (rows >= PAD) & (rows < PAD + grid_size)
        self._inside = (inside_1d[:, None] & inside_1d[None, :]).reshape(-1)  # [C] C = side^2 cells
        # flat offsets of the 6 actions' target cells (stay/catch target the own cell, so they "fail")
        self._action_offset = torch.tensor([1, side, -1, -side, 0, 0], device=dev)  # [A]
        self._neighbour_offset = self._action_offset[:4]  # [4] right, down, left, up
        window = torch.arange(-SIGHT, SIGHT + 1, device=dev)
        self._window_offset = (window[:, None] * side + window[None, :]).reshape(-1)  # [25]
        channel_of_window = torch.arange(N_CHANNELS, device=dev)
        # index into the channel-last grid for every (window cell, channel), relative to the agent
        self._obs_offset = (self._window_offset[:, None] * N_CHANNELS + channel_of_window).reshape(-1)  # [75]
        self._batch_index = torch.arange(n_envs, device=dev)  # [B]

        b, n, p = n_envs, n_agents, n_prey
        self._agent_cell = torch.zeros(b, n, dtype=torch.long, device=dev)  # [B, N] padded flat index
        self._agent_alive = torch.zeros(b, n, dtype=torch.bool, device=dev)  # [B, N]
        self._prey_cell = torch.zeros(b, p, dtype=torch.long, device=dev)  # [B, P]
        self._prey_alive = torch.zeros(b, p, dtype=torch.bool, device=dev)  # [B, P]
        self._t = torch.zeros(b, dtype=torch.long, device=dev)  # [B]
        self._terminated = torch.zeros(b, dtype=torch.bool, device=dev)  # [B]
        self._truncated = torch.zeros(b, dtype=torch.bool, device=dev)  # [B]
        self._grid_cache: torch.Tensor | None = None
        self.reset()

    # ------------------------------------------------------------------ protocol
    @property
    def env_info(self) -> EnvInfo:
        return EnvInfo(
            n_agents=self.n_agents,
            n_actions=N_ACTIONS,
            obs_shape=(2 * SIGHT + 1) ** 2 * N_CHANNELS,
            state_shape=self.grid_size * self.grid_size * N_CHANNELS,
            episode_limit=self.episode_limit,
            obs_dtype=torch.uint8,  # observations are 0/1 occupancy
            binary_obs=True,  # ... and so is the state: the replay buffer stores both as bits
        )

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start B new episodes with all entities on distinct uniformly drawn cells."""
        if seed is not None:
            self._seed(seed)
        b, n, p, g = self.n_envs, self.n_agents, self.n_prey, self.grid_size
        scores = torch.rand(b, g * g, generator=self._generator, device=self.device)  # [B, G*G]
        cells = scores.argsort(dim=1)[:, : n + p]  # [B, N+P] distinct unpadded flat cells
        cells = self._pad_cell(cells // g, cells % g)  # [B, N+P]
        self._agent_cell = cells[:, :n].contiguous()
        self._prey_cell = cells[:, n:].contiguous()
        self._agent_alive.fill_(True)
        self._prey_alive.fill_(True)
        self._t.zero_()
        self._terminated.zero_()
        self._truncated.zero_()
        self._grid_cache = None
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Advance every running env by one step; finished envs stay frozen with reward 0."""
        b, n, p = self.n_envs, self.n_agents, self.n_prey
        if actions.shape != (b, n):
            raise ValueError(f"actions must have shape [n_envs, n_agents] = {[b, n]}, got {list(actions.shape)}")
        actions = actions.to(self.device, torch.long)
        running = ~(self._terminated | self._truncated)  # [B]
        acting = self._agent_alive & running[:, None]  # [B, N]
        batch = self._batch_index
        occupied = self._occupancy()  # [B, C] bool, border cells occupied

        # one draw for all the step's randomness: agent order, prey order, prey move choice
        noise = torch.rand(b, n + p + 4 * p, generator=self._generator, device=self.device)
        agent_order = noise[:, :n].argsort(dim=1)  # [B, N] fresh random permutation per env
        prey_order = noise[:, n : n + p].argsort(dim=1)  # [B, P]
        prey_move_noise = noise[:, n + p :].view(b, p, 4)  # [B, P, 4]

        # 1. agents move one at a time; a move into an occupied (or border) cell fails. The loop
        #    works on the flat [B·C] occupancy with precomputed flat indices (index_select and
        #    index_put_ on one dim: a few cheap ops per agent instead of 2-D advanced indexing)
        cell_in_order = self._agent_cell.gather(1, agent_order)  # [B, N]
        target_in_order = cell_in_order + self._action_offset[actions.gather(1, agent_order)]  # [B, N]
        acting_in_order = acting.gather(1, agent_order)  # [B, N]
        base = (batch * occupied.shape[1])[:, None]  # [B, 1] flat offset of each env's grid
        cell_flat = (cell_in_order + base).t().contiguous()  # [N, B]
        target_flat = (target_in_order + base).t().contiguous()  # [N, B]
        acting_t = acting_in_order.t().contiguous()  # [N, B]
        occ = occupied.view(-1)  # [B·C]
        moved_all = torch.empty(n, b, dtype=torch.bool, device=self.device)  # [N, B]
        for k in range(n):
            moved = torch.logical_and(acting_t[k], occ.index_select(0, target_flat[k]).logical_not_(), out=moved_all[k])
            # a moving agent's own cell is occupied by it alone: it frees; its target fills
            occ.index_put_((cell_flat[k],), occ.index_select(0, cell_flat[k]).logical_and_(moved.logical_not()))
            occ.index_put_((target_flat[k],), moved, accumulate=True)
        new_cells = torch.where(moved_all.t(), target_in_order, cell_in_order)  # [B, N]
        self._agent_cell = self._agent_cell.scatter(1, agent_order, new_cells)

        # 2. each living prey in random order: capture, punish a lone catcher, or flee
        catching = acting & (actions == CATCH)  # [B, N]
        catcher_count = torch.zeros(b, occupied.shape[1], dtype=torch.long, device=self.device)
        # scatter_add: a removed agent may share its stale cell with a living one and must add 0
        catcher_grid = catcher_count.scatter_add_(1, self._agent_cell, catching.long()) > 0  # [B, C]
        prey_cell_in_order = self._prey_cell.gather(1, prey_order)  # [B, P]
        prey_live_in_order = (self._prey_alive & running[:, None]).gather(1, prey_order)  # [B, P]
        neighbours_all = prey_cell_in_order.t()[:, :, None] + self._neighbour_offset  # [P, B, 4]
        live_all = prey_live_in_order.t().contiguous()  # [P, B]
        cell_flat_all = (prey_cell_in_order + base).t().contiguous()  # [P, B]
        captured_all = torch.empty(p, b, dtype=torch.bool, device=self.device)  # [P, B]
        n_catchers_all = torch.empty(p, b, dtype=torch.long, device=self.device)  # [P, B]
        new_prey_cells = []
        for k in range(p):
            cell, live, neighbours = prey_cell_in_order[:, k], live_all[k], neighbours_all[k]  # [B], [B], [B, 4]
            catchers = catcher_grid.gather(1, neighbours)  # [B, 4] bool
            n_catchers = torch.sum(catchers, dim=1, out=n_catchers_all[k])  # [B]
            captured = torch.logical_and(live, n_catchers >= MIN_CATCHERS, out=captured_all[k])  # [B]
            kept = captured.logical_not()[:, None]  # [B, 1]
            catcher_grid.scatter_(1, neighbours, catchers & kept)  # catchers of a capture leave the grid

            neighbour_taken = occupied.gather(1, neighbours)  # [B, 4]
            free = neighbour_taken.logical_not()  # [B, 4]
            flees = live & kept[:, 0] & free.any(dim=1)  # [B]
            choice = torch.where(free, prey_move_noise[:, k], -1.0).argmax(dim=1, keepdim=True)  # [B, 1]
            arrives = torch.zeros_like(free).scatter_(1, choice, flees[:, None])  # [B, 4]
            # removed catchers (catchers & captured) free their cells; the prey's target fills
            occupied.scatter_(1, neighbours, (neighbour_taken & (kept | ~catchers)) | arrives)
            occ.index_put_((cell_flat_all[k],), occ.index_select(0, cell_flat_all[k]).logical_and_(kept[:, 0] & ~flees))
            new_prey_cells.append(torch.where(flees, neighbours.gather(1, choice).squeeze(1), cell))
        # counted after the loop, for all prey at once: captures, and lone (punished) catches
        captured_count = captured_all.sum(0)  # [B]
        punished_count = (live_all & (n_catchers_all > 0) & ~captured_all).sum(0)  # [B]
        captured_now = torch.zeros_like(self._prey_alive).scatter_(1, prey_order, captured_all.t())  # [B, P]
        self._prey_alive &= ~captured_now
        self._prey_cell = self._prey_cell.scatter(1, prey_order, torch.stack(new_prey_cells, dim=1))
        # a catching agent whose cell was cleared from the catcher grid was removed by a capture
        self._agent_alive &= ~(catching & ~catcher_grid.gather(1, self._agent_cell))

        # 3. reward and episode end
        reward = CAPTURE_REWARD * captured_count + self.punishment * punished_count  # [B]
        self._t += running
        terminated = running & (~self._prey_alive.any(dim=1) | ~self._agent_alive.any(dim=1))  # [B]
        self._terminated |= terminated
        self._truncated |= running & ~terminated & (self._t >= self.episode_limit)
        self._grid_cache = None
        n_captured = self.n_prey - self._prey_alive.sum(dim=1)  # [B]
        info = {"n_captured": n_captured}
        return reward.to(torch.float32), self._terminated.clone(), self._truncated.clone(), info

    def get_obs(self) -> torch.Tensor:
        """[B, N, 75] float32: each agent's 5x5x3 window (zeros off-grid; zeros for removed agents)."""
        b, n = self.n_envs, self.n_agents
        grid = self._entity_grid().view(b, -1)  # [B, C*3]
        index = (self._agent_cell * N_CHANNELS)[:, :, None] + self._obs_offset  # [B, N, 75]
        obs = grid.gather(1, index.view(b, -1)).view(b, n, -1)  # [B, N, 75]
        return obs * self._agent_alive[:, :, None]

    def get_state(self) -> torch.Tensor:
        """[B, H*W*3] float32: the whole grid, channel last."""
        g, side = self.grid_size, self._side
        grid = self._entity_grid().view(self.n_envs, side, side, N_CHANNELS)  # [B, side, side, 3]
        return grid[:, PAD : PAD + g, PAD : PAD + g].reshape(self.n_envs, -1)  # [B, G*G*3]

    def get_avail_actions(self) -> torch.Tensor:
        """[B, N, 6] bool: moves that stay on the grid, stay, catch next to a prey; removed agents stay."""
        b, n = self.n_envs, self.n_agents
        neighbours = self._agent_cell[:, :, None] + self._neighbour_offset  # [B, N, 4]
        moves = self._inside[neighbours]  # [B, N, 4]
        prey_grid = self._entity_grid()[:, :, 1]  # [B, C] living prey
        prey_adjacent = prey_grid.gather(1, neighbours.view(b, -1)).view(b, n, 4).any(dim=2)  # [B, N]
        stay = torch.ones(b, n, 1, dtype=torch.bool, device=self.device)
        avail = torch.cat([moves, stay, prey_adjacent[:, :, None]], dim=2)  # [B, N, 6]
        alive = self._agent_alive[:, :, None]
        return (avail & alive) | (~alive & (torch.arange(N_ACTIONS, device=self.device) == STAY))

    # ------------------------------------------------------------------ tests and tools
    def set_positions(
        self,
        agent_pos: torch.Tensor,
        prey_pos: torch.Tensor,
        agent_alive: torch.Tensor | None = None,
        prey_alive: torch.Tensor | None = None,
    ) -> None:
        """Place entities by hand (tests, scripted scenarios) at the start of a fresh episode.

        agent_pos [B, N, 2] and prey_pos [B, P, 2] are (row, col) cells; the alive masks [B, N] /
        [B, P] default to all True. Living entities must be on the grid and on distinct cells.
        The step counter and done flags are reset.
        """
        b, n, p, g = self.n_envs, self.n_agents, self.n_prey, self.grid_size
        agent_pos = torch.as_tensor(agent_pos, device=self.device, dtype=torch.long)
        prey_pos = torch.as_tensor(prey_pos, device=self.device, dtype=torch.long)
        if agent_pos.shape != (b, n, 2) or prey_pos.shape != (b, p, 2):
            raise ValueError(f"agent_pos must be [{b}, {n}, 2] and prey_pos [{b}, {p}, 2]")
        agent_alive = (
            torch.ones(b, n, dtype=torch.bool, device=self.device)
            if agent_alive is None
            else (torch.as_tensor(agent_alive, device=self.device, dtype=torch.bool))
        )
        prey_alive = (
            torch.ones(b, p, dtype=torch.bool, device=self.device)
            if prey_alive is None
            else (torch.as_tensor(prey_alive, device=self.device, dtype=torch.bool))
        )
        pos = torch.cat([agent_pos, prey_pos], dim=1)  # [B, N+P, 2]
        alive = torch.cat([agent_alive, prey_alive], dim=1)  # [B, N+P]
        if ((pos < 0) | (pos >= g)).any():
            raise ValueError(f"positions must lie in [0, {g}) on the {g}x{g} grid")
        cells = self._pad_cell(pos[..., 0], pos[..., 1])  # [B, N+P]
        same = (cells[:, :, None] == cells[:, None, :]) & alive[:, :, None] & alive[:, None, :]
        if (same.sum(dim=(1, 2)) > alive.sum(dim=1)).any():
            raise ValueError("two living entities share a cell")
        self._agent_cell, self._prey_cell = cells[:, :n].contiguous(), cells[:, n:].contiguous()
        self._agent_alive, self._prey_alive = agent_alive.clone(), prey_alive.clone()
        self._t.zero_()
        self._terminated.zero_()
        self._truncated.zero_()
        self._grid_cache = None

    @property
    def agent_positions(self) -> torch.Tensor:
        """[B, N, 2] (row, col) of every agent (a removed agent keeps its last cell)."""
        return self._unpad_cell(self._agent_cell)

    @property
    def prey_positions(self) -> torch.Tensor:
        """[B, P, 2] (row, col) of every prey (a captured prey keeps its last cell)."""
        return self._unpad_cell(self._prey_cell)

    @property
    def agent_alive(self) -> torch.Tensor:
        return self._agent_alive.clone()  # [B, N]

    @property
    def prey_alive(self) -> torch.Tensor:
        return self._prey_alive.clone()  # [B, P]

    # ------------------------------------------------------------------ internals
    def _seed(self, seed: int | None) -> None:
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(int(seed))

    def _pad_cell(self, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return (row + PAD) * self._side + (col + PAD)

    def _unpad_cell(self, cell: torch.Tensor) -> torch.Tensor:
        return torch.stack([cell // self._side - PAD, cell % self._side - PAD], dim=-1)

    def _occupancy(self) -> torch.Tensor:
        """[B, C] bool: border cells and cells holding a living agent or prey."""
        cells = torch.cat([self._agent_cell, self._prey_cell], dim=1)  # [B, N+P]
        alive = torch.cat([self._agent_alive, self._prey_alive], dim=1)  # [B, N+P]
        count = torch.zeros(self.n_envs, self._side**2, dtype=torch.long, device=self.device)
        count.scatter_add_(1, cells, alive.long())  # removed entities add 0 to their last cell
        return (count > 0) | ~self._inside

    def _entity_grid(self) -> torch.Tensor:
        """[B, C, 3] float32 channel-last grid of living agents and prey (cached until the next step)."""
        if self._grid_cache is None:
            b = self.n_envs
            cells = torch.cat([self._agent_cell * N_CHANNELS, self._prey_cell * N_CHANNELS + 1], dim=1)
            alive = torch.cat([self._agent_alive, self._prey_alive], dim=1).to(torch.float32)  # [B, N+P]
            grid = torch.zeros(b, self._side**2 * N_CHANNELS, device=self.device)  # [B, C*3]
            self._grid_cache = grid.scatter_add_(1, cells, alive).view(b, -1, N_CHANNELS)
        return self._grid_cache
