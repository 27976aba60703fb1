"""Per-step trace of SMAC-lite battles under a policy: what each unit did, where, with what health.

``python -m macpo.tools.smac_lite_trace CHECKPOINT [env=5m_vs_6m] [algo=qmix sampler=uniform ...]``
replays a training checkpoint's greedy policy (``last.ckpt`` / ``final.ckpt`` of a run; the
overrides are the run's ``macpo.train`` overrides) on 32 battles, prints battle 0 step by step and
the win rate. This is how the exploit behind sim_version 3 was found (docs/smac_lite.md).

Line format: ``t07 A: <action>@(x,y)h<health+shield>c<cooldown s> ... | E: -><agent slot>@(x,y)h<hp>``
(an enemy's ``->k`` is the agent it targets, -1 none).
"""

from __future__ import annotations

import sys

import torch

from macpo.envs.smac_lite.env import N_NON_ATTACK_ACTIONS, SmacLiteEnv

_ACTION_NAMES = ("no-op", "stop", "N", "S", "E", "W")


def trace_lines(env: SmacLiteEnv, act, battle: int = 0, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """Run every battle of ``env`` to its end with ``act(obs, avail) -> actions [B, N]``; returns
    battle ``battle``'s per-step lines and the battles won [B]."""
    n = env.n_agents
    obs, _, avail = env.reset(seed=seed)
    lines, done_before = [], False
    for t in range(env.env_info.episode_limit):
        action = act(obs, avail)
        pos, hp = env.unit_positions[battle].clone(), (env.unit_health + env.unit_shield)[battle].clone()
        cooldown = env.weapon_cooldown[battle].clone()
        _, terminated, truncated, info = env.step(action)
        if not done_before:
            names = [_ACTION_NAMES[a] if a < N_NON_ATTACK_ACTIONS else f"atk{a - N_NON_ATTACK_ACTIONS}"
                     for a in action[battle].tolist()]  # fmt: skip
            agents = " ".join(
                f"{names[i]}@({pos[i, 0]:.1f},{pos[i, 1]:.1f})h{hp[i]:.0f}c{cooldown[i]:.2f}" for i in range(n)
            )
            enemies = " ".join(
                f"->{k}@({pos[n + j, 0]:.1f},{pos[n + j, 1]:.1f})h{hp[n + j]:.0f}"
                for j, k in enumerate(env._target[battle, n:].tolist())
            )
            lines.append(f"t{t:02d} A: {agents} | E: {enemies}")
        done_before = bool(terminated[battle] | truncated[battle])
        obs, avail = env.get_obs(), env.get_avail_actions()
        if bool((terminated | truncated).all()):
            break
    return lines, info["battle_won"]


def main(argv: list[str] | None = None) -> None:
    import hydra
    from hydra import compose, initialize_config_dir

    from macpo.algos.base import LoopSettings
    from macpo.config.paths import CONF_DIR
    from macpo.envs.factory import make_env

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.exit(__doc__)
    checkpoint, overrides = argv[0], argv[1:]
    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    env = make_env(cfg.env, 32, "cpu", seed=cfg.seed + 30_000)
    if not isinstance(env, SmacLiteEnv):
        sys.exit("trace needs env.backend=lite")
    build = hydra.utils.instantiate(cfg.algo, _partial_=True, _convert_="all")
    algo = build(train_env=env, sampler=hydra.utils.instantiate(cfg.sampler), loop=LoopSettings(1, 1, 1))
    algo.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"], strict=False)
    policy = algo.greedy_policy()
    policy.reset(env.n_envs)
    with torch.no_grad():
        lines, won = trace_lines(env, policy.act)
    print("\n".join(lines))
    print(f"won {won.float().mean().item():.0%} of {env.n_envs} battles")


if __name__ == "__main__":
    main()
