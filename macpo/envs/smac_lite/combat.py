"""Combat arithmetic on batched unit tensors: hits, healing, shield regeneration, cooldowns, motion.

Pure functions of tensors ([B, U] unless noted) so that each rule is checked on its own.

Hits: each hit's raw damage goes to shields first (shields have 0 armor); what passes the
shields loses the target's armor once per hit, and a hit landing on health deals at least
``MIN_HIT_DAMAGE``; the part of a shield-breaking hit that passes loses the armor down to 0.
Hits on the same target in the same hit phase are pooled: a phase whose target has no shield
left loses exactly the sum of its per-hit health damages; a phase that breaks the shield
passes ``max(overflow - armor * n, 0)`` to health, with ``n`` the number of hits needed to
carry the overflow (exact for one attacker, an approximation for simultaneous hits).
"""

from __future__ import annotations

import torch

from macpo.envs.smac_lite.units import SHIELD_REGEN_DELAY, SHIELD_REGEN_PER_SECOND


def apply_hits(
    health: torch.Tensor,
    shield: torch.Tensor,
    raw: torch.Tensor,
    past_armor: torch.Tensor,
    count: torch.Tensor,
    armor: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One hit phase. ``raw``: summed raw damage of the hits on each target; ``past_armor``: summed
    ``max(hit - armor, MIN_HIT_DAMAGE)``; ``count``: number of hits. Returns (health, shield)."""
    absorbed = torch.minimum(shield, raw)
    overflow = raw - absorbed
    mean_hit = raw / count.clamp(min=1)
    n_through = torch.ceil(overflow / mean_hit.clamp(min=1e-9) - 1e-6).clamp(min=0)
    breaking = (overflow - armor * n_through).clamp(min=0)
    health_loss = torch.where(shield <= 0, past_armor, breaking)
    return health - health_loss, shield - absorbed


def heal(
    energy: torch.Tensor,
    missing_health: torch.Tensor,
    healing: torch.Tensor,
    heal_per_second: torch.Tensor,
    heal_per_energy: torch.Tensor,
    dt: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Health each healer restores this step (limited by rate, energy and the target's missing
    health; 0 where ``healing`` is false) and the healer's energy afterwards."""
    amount = torch.minimum(torch.minimum(heal_per_second * dt, energy * heal_per_energy), missing_health)
    amount = amount.clamp(min=0) * healing
    spent = amount / heal_per_energy.clamp(min=1e-9)
    return amount, energy - spent


def regenerate_shields(
    shield: torch.Tensor, max_shield: torch.Tensor, since_damage: torch.Tensor, dt: float
) -> torch.Tensor:
    """Shields after a step whose end is ``since_damage`` seconds after the last damage: they grow
    at ``SHIELD_REGEN_PER_SECOND`` for the part of the step past ``SHIELD_REGEN_DELAY``."""
    regen_time = (since_damage - SHIELD_REGEN_DELAY).clamp(min=0.0, max=dt)
    return torch.minimum(shield + SHIELD_REGEN_PER_SECOND * regen_time, max_shield)


def advance_cooldown(
    cooldown: torch.Tensor, fired: torch.Tensor, fire_time: torch.Tensor, period: torch.Tensor, dt: float
) -> torch.Tensor:
    """Remaining weapon cooldown (s) after a step of ``dt`` seconds. A unit that fired did so
    ``fire_time`` seconds into the step (when its cooldown ran out, or later if it first had to
    walk into range and wind up); its next attack is ``period`` after that moment, so the attack
    rate is exact without sub-steps as long as ``period > dt``."""
    return torch.where(fired, fire_time + period - dt, (cooldown - dt).clamp(min=0.0))


def separate(pos: torch.Tensor, contact: torch.Tensor, solid: torch.Tensor, distinct: torch.Tensor) -> torch.Tensor:
    """Push apart overlapping bodies (pos [B, U, 2]; contact [U, U]: the sum of the two radii;
    solid [B, U]: alive ground units; distinct [U, U]: i != j): each overlapping pair moves apart
    along the line between them by half the overlap each, one relaxation pass (StarCraft II ground
    units cannot stand inside each other)."""
    dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")  # [B, U, U]
    pair = solid.unsqueeze(2) & solid.unsqueeze(1) & distinct
    overlap = (contact - dist).clamp(min=0.0) * pair  # [B, U, U]
    push = 0.5 * overlap / dist.clamp(min=1e-6)  # [B, U, U] per unit of separation
    # sum_j push_ij (p_i - p_j) without building the [B, U, U, 2] differences
    return pos + push.sum(-1, keepdim=True) * pos - torch.bmm(push, pos)


def step_toward(
    pos: torch.Tensor, goal: torch.Tensor, stop_distance: torch.Tensor, max_step: torch.Tensor
) -> torch.Tensor:
    """Move each unit (pos, goal [B, U, 2]) straight toward its goal by at most ``max_step``,
    stopping ``stop_distance`` short of it."""
    delta = goal - pos  # [B, U, 2]
    dist = delta.square().sum(-1).sqrt()  # [B, U]
    travel = torch.minimum((dist - stop_distance).clamp_(min=0.0), max_step)
    return pos + delta * (travel / dist.clamp_(min=1e-6)).unsqueeze(-1)


def nearest(excluded: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Index of the nearest candidate along the last dim (dist [..., U]; ``excluded`` [..., U] marks
    the non-candidates), or -1 if none."""
    value, index = dist.masked_fill(excluded, float("inf")).min(-1)
    return index.masked_fill_(value == float("inf"), -1)  # distances are finite: inf = no candidate
