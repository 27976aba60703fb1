"""EpisodeBuffer: a preallocated circular store of whole episodes on one device.

Memory follows what is really stored:

- 0/1 fields are kept as bits: ``avail_actions`` always, observations and state when the env says
  they are 0/1 (``EnvInfo.binary_obs``, e.g. predator-prey's occupancy grids): 8 values a byte
  along the last axis (``pack_bits``). Reading unpacks only the episodes read.
- Only real timesteps are written: an episode of L transitions writes its rows t = 0 .. L (the
  transitions and the final observation, what ``macpo.nn.packing`` reads); the rest of its
  episode_limit+1 rows is never touched. Storage comes from ``torch.empty``, whose pages the
  kernel maps in only when first written, so the resident size grows with the timesteps played
  (a SMAC episode of 26 steps in a slab of 181), and a checkpoint saves those rows only.
  Reading zeroes the rows past each episode's final observation in the copy it returns.
"""

from __future__ import annotations

import torch

from macpo.envs.base import EnvInfo
from macpo.memory import no_huge_pages

#: version of ``EpisodeBuffer.state_dict``'s layout (1: the full unpacked tensors, before bit packing)
STATE_LAYOUT = 2
_BINARY_WHEN_FLAGGED = ("obs", "state")  # fields that are 0/1 when ``EnvInfo.binary_obs`` is set


def episode_layout(info: EnvInfo) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-field shape (after the leading [K, T+1]) and dtype of an episode batch as ``gather`` returns it."""
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


def packed_fields(info: EnvInfo) -> tuple[str, ...]:
    """The fields stored as bits: ``avail_actions``, and observations and state if they are 0/1."""
    return ("avail_actions", *(_BINARY_WHEN_FLAGGED if info.binary_obs else ()))


def pack_bits(x: torch.Tensor) -> torch.Tensor:
    """0/1 values [..., D] (any dtype) → [..., ceil(D/8)] uint8; bit j of byte i holds x[..., 8i + j]."""
    d = x.shape[-1]
    n_bytes = (d + 7) // 8
    bits = x.to(torch.uint8)
    if n_bytes * 8 != d:
        bits = torch.nn.functional.pad(bits, (0, n_bytes * 8 - d))  # [..., 8·ceil(D/8)]
    shifts = torch.arange(8, dtype=torch.uint8, device=x.device)
    return (bits.view(*x.shape[:-1], n_bytes, 8) << shifts).sum(-1, dtype=torch.uint8)  # [..., ceil(D/8)]


def unpack_bits(packed: torch.Tensor, d: int, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of ``pack_bits``: [..., ceil(D/8)] uint8 → 0/1 values [..., D] in ``dtype`` (contiguous).

    Each byte is looked up in a [256, 8] table of its bits (one gather: faster than shifting and
    masking every byte eight times).
    """
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    table = (torch.arange(256, device=packed.device).to(torch.uint8)[:, None] >> shifts) & 1  # [256, 8]
    bits = table.index_select(0, packed.flatten().int()).view(*packed.shape[:-1], -1)  # [..., 8·ceil(D/8)]
    return bits[..., :d].to(dtype).contiguous()


class EpisodeBuffer:
    """Capacity in episodes; each episode has room for T+1 = episode_limit+1 timesteps.

    Observations are stored as uint8 0/1 or packed bits where the env's are 0/1, float16 for SMAC
    (``EnvInfo.obs_dtype``); see the module docstring for what is written. Reading (``gather``)
    returns each field in its ``episode_layout`` dtype, trimmed to the longest sampled episode,
    with zeros past each episode's final observation; indexing (``buffer[idx]``) also casts back
    to float32 / long.
    """

    def __init__(self, capacity: int, env_info: EnvInfo, device: torch.device | str = "cpu") -> None:
        if capacity <= 0:
            raise ValueError(f"buffer_size must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.info = env_info
        self.device = torch.device(device)
        self.max_t = env_info.episode_limit + 1
        self.layout = episode_layout(env_info)
        self.packed = packed_fields(env_info)
        # storage per field: [C, T+1, ...]; packed fields end in ceil(D/8) bytes. ``filled`` is not
        # stored: each episode is a prefix of real transitions, so its length says it all.
        self.data: dict[str, torch.Tensor] = {}
        for k in self.layout:
            if k != "filled":
                shape = (self.capacity, self.max_t, *self._stored_shape(k))  # [C, T+1, ...]
                self.data[k] = torch.empty(shape, dtype=self._stored_dtype(k), device=self.device)
                no_huge_pages(self.data[k])  # else THP=always makes a slab resident on its first write
        self.length = torch.zeros(self.capacity, dtype=torch.long, device=self.device)  # [C] transitions
        self.pos = 0  # next slot to write
        self.n_stored = 0

    def _stored_shape(self, name: str) -> tuple[int, ...]:
        shape = self.layout[name][0]
        return (*shape[:-1], (shape[-1] + 7) // 8) if name in self.packed else shape

    def _stored_dtype(self, name: str) -> torch.dtype:
        return torch.uint8 if name in self.packed else self.layout[name][1]

    def __len__(self) -> int:
        return self.n_stored

    # ---- writing ------------------------------------------------------------------------------
    def insert(self, episodes: dict[str, torch.Tensor]) -> torch.Tensor:
        """Write K episodes ([K, t, ...] each, t ≤ T+1) at the circular position; returns their slots [K].

        ``filled`` [K, t] must be a prefix of real transitions followed by the final observation's
        row (what ``Collector`` returns); 0/1 fields must hold only 0 and 1. Checked before anything
        is written.
        """
        k = episodes["filled"].shape[0]
        if k > self.capacity:
            raise ValueError(f"cannot insert {k} episodes into a buffer of capacity {self.capacity}")
        slots = (torch.arange(k, device=self.device) + self.pos) % self.capacity  # [K]
        self._write(slots, episodes)
        self.pos = (self.pos + k) % self.capacity
        self.n_stored = min(self.n_stored + k, self.capacity)
        return slots

    def _write(self, slots: torch.Tensor, episodes: dict[str, torch.Tensor]) -> None:
        """Store rows t = 0 .. L of each episode at ``slots`` [K] (only those: the rest stays untouched)."""
        missing = set(self.layout) - set(episodes)
        if missing:
            raise ValueError(f"episodes lack the fields {sorted(missing)}")
        filled = episodes["filled"].to(self.device).bool()  # [K, t]
        k, t = filled.shape
        if t > self.max_t:
            raise ValueError(f"episodes have {t} timesteps, more than episode_limit + 1 = {self.max_t}")
        length = filled.sum(1)  # [K]
        time = torch.arange(t, device=self.device)  # [t]
        if not torch.equal(filled, time < length[:, None]):
            raise ValueError("filled must mark a prefix of each episode (its real transitions), then only False")
        if bool((length >= t).any()):
            raise ValueError("every episode needs its final observation: a row after its last transition "
                             "(filled[:, -1] must be False)")  # fmt: skip
        real = time <= length[:, None]  # [K, t] transitions and the final observation
        ep_of_row, t_of_row = real.nonzero(as_tuple=True)  # [R] each
        rows = {name: self._encode(name, episodes[name].to(self.device)[ep_of_row, t_of_row])  # [R, ...]
                for name in self.data}  # fmt: skip
        dst_index = slots[ep_of_row] * self.max_t + t_of_row  # [R] into the [C·(T+1)] storage rows
        for name, x in rows.items():
            store = self.data[name]
            store.view(-1, *store.shape[2:]).index_copy_(0, dst_index, x)
        self.length[slots] = length

    def _encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Rows [R, ...] of one field in its storage form (0/1 fields checked, then packed)."""
        if name in _BINARY_WHEN_FLAGGED and name in self.packed:
            bad = (x != 0) & (x != 1)
            if bool(bad.any()):
                value = x[bad][0].item()
                raise ValueError(f"'{name}' holds {value!r}, not 0 or 1, but env_info.binary_obs says the env's "
                                 "observations and state are 0/1 (they are stored as bits)")  # fmt: skip
        if name == "avail_actions":
            x = x.bool()
        if name in self.packed:
            return pack_bits(x)
        return x.to(self.data[name].dtype)

    # ---- reading ------------------------------------------------------------------------------
    def gather(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Episodes at slots ``idx`` [b] as [b, T'+1, ...] in their ``episode_layout`` dtypes, trimmed
        to the longest; rows past each episode's final observation are zero (``filled`` False).

        What the learners read: they pack the real timesteps first and cast only those rows
        (``macpo.nn.packing``), so no float32 copy of the padded batch is ever made. Only real
        rows are read from the storage (bits where packed) and unpacked, then laid into zeros.
        """
        idx = idx.to(self.device)
        length = self.length[idx]  # [b]
        b = idx.shape[0]
        shortest, longest = torch.aminmax(length)
        shortest, longest = (int(v) for v in torch.stack([shortest, longest]).tolist())  # one host sync
        t_len = min(max(longest + 1, 2), self.max_t)  # longest episode + its final observation
        time = torch.arange(t_len, device=self.device)  # [T'+1]
        if shortest + 1 >= t_len:  # no padding: copy the slabs as they are
            rows = None
        else:  # only the real rows are read (t = 0 .. L), then laid into zeros
            ep_of_row, t_of_row = (time <= length[:, None]).nonzero(as_tuple=True)  # [R] each
            rows = (idx[ep_of_row] * self.max_t + t_of_row, ep_of_row * t_len + t_of_row)  # storage, output
        out = {}
        for name, (shape, dtype) in self.layout.items():
            if name == "filled":
                out[name] = time < length[:, None]  # [b, T'+1]
                continue
            store = self.data[name]
            if rows is None:
                x = store[idx, :t_len]  # [b, T'+1, ...] stored form
            else:
                x = store.view(-1, *store.shape[2:]).index_select(0, rows[0])  # [R, ...] stored form
            if name in self.packed:
                x = unpack_bits(x, shape[-1], dtype)
            if rows is not None:
                x = torch.zeros(b * t_len, *shape, dtype=dtype, device=self.device).index_copy_(0, rows[1], x)
            out[name] = x.view(b, t_len, *shape)
        return out

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
        """Storage bytes one episode slot reserves (packed fields as bits; resident only as far as written)."""
        return sum(v[0].numel() * v.element_size() for v in self.data.values()) + self.length.element_size()

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The stored episodes, compactly: each field's real rows (t = 0 .. L) of the slots in use,
        concatenated in slot order, in storage form (bits where packed), plus the lengths (on CPU)."""
        n = self.n_stored  # slots fill from 0 until the buffer is full: the first n are all there is
        length = self.length[:n]
        rows = self._leading_rows(length)  # [R]
        return {
            "layout": STATE_LAYOUT,
            "capacity": self.capacity,
            "pos": self.pos,
            "n_stored": n,
            "length": length.cpu(),  # [n]
            "rows": {k: v.view(-1, *v.shape[2:]).index_select(0, rows).cpu() for k, v in self.data.items()},
        }

    def _leading_rows(self, length: torch.Tensor) -> torch.Tensor:
        """Flat storage rows [R] of the real timesteps (t = 0 .. L) of slots 0 .. n-1, given their lengths [n]."""
        real = torch.arange(self.max_t, device=self.device) <= length[:, None]  # [n, T+1]
        return real.flatten().nonzero().squeeze(1)

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` saved; also reads the unpacked layout of earlier versions."""
        layout = state.get("layout", 1 if "data" in state else None)
        n, pos = int(state["n_stored"]), int(state["pos"])
        if not (0 <= n <= self.capacity and 0 <= pos < self.capacity):
            raise ValueError(f"the checkpoint's replay buffer holds {n} episodes (next slot {pos}); this run's "
                             f"buffer_size is {self.capacity}")  # fmt: skip
        if layout == 1:
            self._load_unpacked(state["data"], n)
        elif layout == STATE_LAYOUT:
            self._load_rows(state)
        else:
            raise ValueError(f"the checkpoint's replay buffer has layout {layout!r}; this version of macpo reads "
                             f"layouts 1 and {STATE_LAYOUT}. Resume with the macpo version that wrote it, or remove "
                             "the run's last.ckpt to start it afresh")  # fmt: skip
        self.pos, self.n_stored = pos, n

    def _load_rows(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"the checkpoint's replay buffer has capacity {state['capacity']}; this run's "
                             f"buffer_size is {self.capacity}")  # fmt: skip
        length = state["length"].to(self.device)
        n = length.shape[0]
        if n != int(state["n_stored"]) or bool((length >= self.max_t).any()):
            raise ValueError("the checkpoint's replay buffer lengths do not fit this env's episode_limit")
        rows = self._leading_rows(length)  # [R]
        for name, store in self.data.items():
            saved = state["rows"].get(name)
            expected = (rows.shape[0], *store.shape[2:])
            if saved is None or tuple(saved.shape) != expected or saved.dtype != store.dtype:
                got = None if saved is None else (tuple(saved.shape), saved.dtype)
                raise ValueError(f"the checkpoint's replay buffer field '{name}' is {got}, expected "
                                 f"{(expected, store.dtype)}: written for another env or buffer layout")  # fmt: skip
        for name, store in self.data.items():
            store.view(-1, *store.shape[2:]).index_copy_(0, rows, state["rows"][name].to(self.device))
        self.length[:n] = length

    def _load_unpacked(self, data: dict[str, torch.Tensor], n: int) -> None:
        """Layout 1 (before bit packing): full tensors [n, T+1, ...] per field, as ``gather`` returns them."""
        for name, (shape, _) in self.layout.items():
            saved = data.get(name)
            if saved is None or tuple(saved.shape) != (n, self.max_t, *shape):
                got = None if saved is None else tuple(saved.shape)
                raise ValueError(f"the checkpoint's replay buffer field '{name}' has shape {got}, expected "
                                 f"{(n, self.max_t, *shape)}: written for another env")  # fmt: skip
        if n:
            self._write(torch.arange(n, device=self.device), data)
