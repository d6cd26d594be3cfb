"""A per-user memory of the distant past, written during training and read at evaluation.

Each training window (see ``train/windows.py``) keeps a slot for "everything before this
window". After a training step on window w, the user's summary of w (the retriever's state at
w's last position, detached) is written into the slot of the next, later window of the same
user, gated with what w's own slot held: slot[next] = (prev state, summary). A read applies the
learned gate g = sigmoid(W [prev; summary]) in the graph, so the gate trains:
memory = (1 - g) * prev + g * summary.

No target leaks: a window's slot only ever holds items from before its first input. At
evaluation a user reads the slot of their most recent training window. The memory only says
something for users whose training history is longer than one window.
"""

from __future__ import annotations

import torch
from torch import nn


class WindowMemory(nn.Module):
    def __init__(self, n_windows: int, n_users: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("prev", torch.zeros(n_windows, dim))
        self.register_buffer("summary", torch.zeros(n_windows, dim))
        self.register_buffer("written", torch.zeros(n_windows, dtype=torch.bool))
        # Filled by ``bind``: the next later window of each window, each user's last window.
        self.register_buffer("later", torch.full((n_windows,), -1, dtype=torch.int64))
        self.register_buffer("last_window", torch.full((n_users,), -1, dtype=torch.int64))
        self.gate = nn.Linear(2 * dim, dim)
        self.read_proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.read_proj.weight)  # starts as "no memory"
        nn.init.zeros_(self.read_proj.bias)

    def bind(self, later: torch.Tensor, last_window: torch.Tensor) -> None:
        self.later.copy_(later)
        self.last_window.copy_(last_window)

    def _combine(self, windows: torch.Tensor) -> torch.Tensor:
        prev, summary = self.prev[windows], self.summary[windows]
        g = torch.sigmoid(self.gate(torch.cat([prev, summary], dim=-1)))
        state = (1 - g) * prev + g * summary
        return state * self.written[windows, None]

    def read_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, dim] memory for training windows (what precedes each)."""
        return self.read_proj(self._combine(windows))

    def read_users(self, users: torch.Tensor) -> torch.Tensor:
        """[B, dim] memory for evaluation: before each user's most recent training window."""
        windows = self.last_window[users]
        known = windows >= 0
        out = self.read_proj(self._combine(windows.clamp(min=0)))
        return out * known[:, None]

    @torch.no_grad()
    def write(self, windows: torch.Tensor, summaries: torch.Tensor) -> None:
        """After a step on ``windows``: hand each one's state on to its next later window."""
        target = self.later[windows]
        keep = target >= 0
        if not bool(keep.any()):
            return
        state = self._combine(windows)[keep]
        target = target[keep]
        self.prev[target] = state
        self.summary[target] = summaries[keep].detach()
        self.written[target] = True
