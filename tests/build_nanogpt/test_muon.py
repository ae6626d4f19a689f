"""build_nanogpt/muon.py: the Newton-Schulz quintic against its scalar polynomial and its promised band; the
AdamW groups against torch.optim.AdamW; the Muon update orthogonal. (DDP and resume: test_train_modern.py.)"""
import math

import pytest
import torch

import muon


def scalar_map(s: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """p(s) = a s + b s^3 + c s^5 applied `steps` times, in float64: what NS5 does to each singular value."""
    a, b, c = 3.4445, -4.7750, 2.0315  # Keller Jordan's Muon post
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


@pytest.mark.parametrize("shape", [(64, 32), (32, 96), (48, 48)])
def test_newton_schulz_acts_on_singular_values_as_the_quintic(shape):
    torch.manual_seed(0)
    G = torch.randn(*shape)
    s0 = torch.linalg.svdvals(G.double() / G.double().norm())  # in (0, 1]
    got = torch.linalg.svdvals(muon.newton_schulz5(G).double())
    torch.testing.assert_close(got, scalar_map(s0).sort(descending=True).values, atol=2e-3, rtol=0)
    # the singular vectors are G's: O = U f(S) V^T, so O and G span the same directions, O^T G symmetric >= 0
    O = muon.newton_schulz5(G).double()
    P = O.T @ G.double() if shape[0] >= shape[1] else O @ G.double().T
    torch.testing.assert_close(P, P.T, atol=1e-3, rtol=1e-3)


def test_newton_schulz_singular_values_lie_in_the_band_its_coefficients_promise():
    """Singular values (of the input divided by its Frobenius norm) from 0.002 to 1 land in ~[0.68, 1.20]."""
    lo, hi = muon.ns_band(lowest=0.002)
    assert 0.6 < lo < 0.75 and 1.15 < hi < 1.25  # the band the post describes ("roughly 0.7 .. 1.2")
    torch.manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    s = torch.logspace(math.log10(0.002), 0, 32, dtype=torch.float64)  # a condition number of 500
    G = (U[:, :32] * (s / s.norm())) @ V.T  # Frobenius norm 1: NS5's normalisation leaves it as it is
    lo, hi = muon.ns_band(lowest=(s / s.norm()).min().item())
    got = torch.linalg.svdvals(muon.newton_schulz5(G.float()).double())
    assert got.min() > lo - 2e-3 and got.max() < hi + 2e-3
    # smaller singular values have not reached the band after 5 steps: the promise has a floor
    assert scalar_map(torch.tensor(1e-4, dtype=torch.float64)) < 0.1


def test_adamw_groups_match_torch_adamw():
    torch.manual_seed(0)
    w = torch.randn(5, 7)
    b = torch.randn(7)
    mine = [w.clone().requires_grad_(), b.clone().requires_grad_()]
    ref = [w.clone().requires_grad_(), b.clone().requires_grad_()]
    groups = lambda ps: [{"params": [ps[0]], "weight_decay": 0.1}, {"params": [ps[1]], "weight_decay": 0.0}]
    opt = muon.Muon(groups(mine), lr=3e-3, betas=(0.8, 0.95), eps=1e-8)
    torch_opt = torch.optim.AdamW(groups(ref), lr=3e-3, betas=(0.8, 0.95), eps=1e-8, foreach=False)
    for step in range(5):
        g = [torch.randn(5, 7), torch.randn(7)]
        for ps, o in ((mine, opt), (ref, torch_opt)):
            for p, gi in zip(ps, g):
                p.grad = gi.clone()
            o.step()
    for p, q in zip(mine, ref):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=1e-6)


def test_muon_step_is_an_orthogonalised_nesterov_momentum_update():
    torch.manual_seed(0)
    W = torch.randn(16, 8, requires_grad=True)
    W0 = W.detach().clone()
    opt = muon.Muon([{"params": [W], "muon": True}], lr=0.1, momentum=0.9)
    g1, g2 = torch.randn(16, 8), torch.randn(16, 8)
    W.grad = g1.clone()
    opt.step()
    W.grad = g2.clone()
    opt.step()
    # step 2's update: NS5 of g2 + 0.9 * buf, buf = 0.9 * g1 + g2; scaled by sqrt(16 / 8)
    d2 = W0 - 0.1 * math.sqrt(2) * muon.newton_schulz5(g1 + 0.9 * g1) - W.detach()
    s = torch.linalg.svdvals(d2 / (0.1 * math.sqrt(2)))
    lo, hi = muon.ns_band(lowest=0.01)
    assert s.min() > lo - 1e-3 and s.max() < hi + 1e-3  # an orthogonalised update, whatever the gradient's scale
    want = muon.newton_schulz5(g2 + 0.9 * (0.9 * g1 + g2))
    torch.testing.assert_close(d2 / (0.1 * math.sqrt(2)), want, atol=1e-5, rtol=1e-5)


def test_muon_refuses_a_vector():
    with pytest.raises(ValueError, match="2-D"):
        muon.Muon([{"params": [torch.zeros(3, requires_grad=True)], "muon": True}])
