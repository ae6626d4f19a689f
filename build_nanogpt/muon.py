"""Muon (MomentUm Orthogonalized by Newton-Schulz) for the hidden matrices, AdamW for everything else.

Written from Keller Jordan, "Muon: An optimizer for hidden layers in neural networks" (2024),
https://kellerjordan.github.io/posts/muon/ , the optimizer of the NanoGPT speedrun's 24.9-minute record on.
For a 2-D weight W with gradient G, Muon keeps SGD momentum and replaces the update by the nearest
semi-orthogonal matrix:

    B <- mu * B + G                                     (momentum buffer)
    M  = G + mu * B   (Nesterov)   or   B               (plain)
    O  = NS5(M) ~ U V^T              where M = U S V^T  (every singular value pushed to about 1)
    W <- W - lr * sqrt(max(1, rows / cols)) * O

NS5 is five steps of the quintic Newton-Schulz iteration X <- a X + b (X X^T) X + c (X X^T)^2 X on
X0 = M / ||M||_F (so every singular value starts in (0, 1]). On the singular values it is the scalar map
p(s) = a s + b s^3 + c s^5; the post's coefficients (a, b, c) = (3.4445, -4.7750, 2.0315) make the slope at 0
as large as possible (a = 3.4445: small singular values grow fast) while p keeps [~0.7, ~1.2] inside itself,
so after five steps every singular value above ~1e-3 lands in that band, not at exactly 1 ("the iteration does
not need to converge": the post). `ns_band` computes the band from the coefficients; the tests hold the
matrix iteration to it. The iteration runs in bfloat16 on CUDA (as the post does) and float32 on a CPU.

Under DDP the gradients are already averaged when `step` runs, so every rank computes the same update from
the same numbers (the speedrun spreads the Newton-Schulz work over the ranks and gathers the results: the same
update, less time; a systems record, left out here). The other parameter groups (`muon: False`: embeddings,
head, norms, scalars) take AdamW's step, written out as torch.optim.AdamW computes it (tested against it), so one
optimizer holds the whole model and its state_dict resumes exactly.
"""
from __future__ import annotations

import math

import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz5(G: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """~U V^T of G = U S V^T (2-D): the quintic iteration above, on the wide orientation (rows <= cols)."""
    a, b, c = NS_COEFFS
    X = G.to(torch.bfloat16 if G.is_cuda else torch.float32)
    X = X / (X.norm() + eps)  # Frobenius norm >= spectral norm: singular values in (0, 1]
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T  # X X^T is then the smaller Gram matrix
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return (X.T if tall else X).to(G.dtype)


def ns_band(lowest: float = 1e-3, steps: int = 5, points: int = 100_001) -> tuple[float, float]:
    """The range of p applied `steps` times to singular values in [lowest, 1] (float64, on a fine grid)."""
    a, b, c = NS_COEFFS
    s = torch.linspace(lowest, 1.0, points, dtype=torch.float64)
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s.min().item(), s.max().item()


class Muon(torch.optim.Optimizer):
    """Groups with `muon: True` take the Muon step (lr, momentum, nesterov, ns_steps, weight_decay);
    the others take AdamW's (lr, betas, eps, weight_decay)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, betas=(0.9, 0.95), eps: float = 1e-8, weight_decay: float = 0.0):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, betas=tuple(betas),
                        eps=eps, weight_decay=weight_decay, muon=False)
        super().__init__(params, defaults)
        for group in self.param_groups:
            bad = [p.shape for p in group["params"] if group["muon"] and p.dim() != 2]
            if bad:
                raise ValueError(f"Muon orthogonalises 2-D matrices only, not {tuple(bad[0])}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["muon"]:
                    self._muon(p, group)
                else:
                    self._adamw(p, group)
        return loss

    def _muon(self, p, group):
        g, state, mu = p.grad, self.state[p], group["momentum"]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.mul_(mu).add_(g)
        update = g.add(buf, alpha=mu) if group["nesterov"] else buf
        update = newton_schulz5(update, group["ns_steps"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(update, alpha=-group["lr"] * math.sqrt(max(1.0, p.size(0) / p.size(1))))

    def _adamw(self, p, group):
        """torch.optim.AdamW's single-tensor step (decoupled weight decay, bias-corrected moments)."""
        g, state = p.grad, self.state[p]
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        step = state["step"].item()
        p.mul_(1 - group["lr"] * group["weight_decay"])
        state["exp_avg"].lerp_(g, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2 ** step)).add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1 ** step))
