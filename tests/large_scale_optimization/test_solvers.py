"""large_scale_optimization/solvers.py: each method's step rule and cost accounting, Armijo, CG, the
preconditioners and the Tracker, on small problems."""
import numpy as np
import pytest

import data
import model
import solvers
from solvers import LogisticProblem, SolverOptions, Tracker


@pytest.fixture(scope="module")
def synthetic_prob():
    """n = 400, D = 11, K = 3, lam = 1e-3, with L, L_max and f*."""
    prob = LogisticProblem.from_dataset(data.make_synthetic(n=400, d=10, K=3, cond=10, seed=0), 1e-3)
    _, prob.f_star, *_ = solvers.solve_reference(prob, SolverOptions(), np.random.default_rng(0))
    return prob


def run_method(prob, method, **opts):
    tr = Tracker(method, prob, verbose=False)
    W0 = np.zeros(prob.shape)
    tr.record(W0)
    tr.start()
    solvers.SOLVERS[method](prob, W0, SolverOptions(**opts), tr, np.random.default_rng(0))
    return tr.records


def one_sample_problem(lam=0.1):
    """n = 1, D = 3, K = 3: every sample gradient IS the full gradient, so each first-order method is
    gradient descent with its own step rule, and its iterates can be recomputed by hand. L is set to
    2 L_max (not a real bound here) so that the rules min(b / L_max, 1 / L), 1 / L and 1 / L_max differ."""
    X = np.array([[0.5, -1.0, 1.0]])
    y = np.array([2])
    prob = LogisticProblem(X, y, X, y, lam)
    prob.L_max = float(X[0] @ X[0]) / 2 + lam
    prob.L = 2 * prob.L_max
    return prob


@pytest.mark.parametrize("method", ["gd", "sgd", "minibatch_sgd", "minibatch_gd", "svrg", "saga", "lsvrg"])
def test_first_order_steps_follow_their_step_rules(method):
    """gd: 1/L; sgd: eta0 / (1 + eta0 lam k) with eta0 = 1/L_max; minibatch: the same decay from
    eta0 = min(b / L_max, 1 / L); svrg: constant svrg_step / L_max; saga, lsvrg: constant vr_step / L(1)
    = vr_step / L_max (for n = 1 a variance-reduced direction is the full gradient, lam W included).
    Each from a W0 far from 0, so a dropped lam W term shows."""
    prob = one_sample_problem()
    W0 = np.random.default_rng(0).standard_normal(prob.shape)
    lam, L, L_max = prob.lam, prob.L, prob.L_max
    decay = lambda eta0: [eta0 / (1 + eta0 * lam * k) for k in range(3)]  # noqa: E731
    etas = {"gd": [1 / L] * 3, "sgd": decay(1 / L_max), "minibatch_sgd": decay(min(1 / L_max, 1 / L)),
            "minibatch_gd": decay(min(1 / L_max, 1 / L)), "svrg": [0.5 / L_max] * 2, "saga": [0.5 / L_max] * 2,
            "lsvrg": [0.5 / L_max] * 2}[method]
    W, fs = W0.copy(), [model.loss(W0, prob.X, prob.y, lam)]
    for eta in etas:
        W = W - eta * model.gradient(W, prob.X, prob.y, lam)
        fs.append(model.loss(W, prob.X, prob.y, lam))
    tr = Tracker(method, prob, verbose=False)
    tr.record(W0)
    tr.start()
    W_out = solvers.SOLVERS[method](prob, W0.copy(), SolverOptions(passes=3, svrg_step=0.5, vr_step=0.5), tr,
                                  np.random.default_rng(0))
    np.testing.assert_allclose([r["f"] for r in tr.records], fs, rtol=1e-12)
    np.testing.assert_allclose(W_out, W, rtol=1e-12, atol=1e-14)
    # svrg: the snapshot's full gradient is one pass, then one per inner step; saga: the table at W0 is one
    # pass, then one per epoch; lsvrg (q = b/n = 1): a snapshot (1) and a step (1) per epoch
    passes = dict(svrg=[0.0, 2.0, 3.0], saga=[0.0, 2.0, 3.0], lsvrg=[0.0, 2.0, 4.0]).get(method, [0.0, 1.0, 2.0, 3.0])
    assert [r["passes"] for r in tr.records] == passes


def test_armijo_backtracks_to_sufficient_decrease(synthetic_prob):
    """From a too long first trial the line search halves t until f(W + t d) <= f + c t <g, d>, charging
    one pass per trial. With c = 0.5 and t0 = 30 / L the first trial goes UP, by 0.08 t0 ||g||^2: inside the
    band that a sign slip in the test (f + c t |<g, d>|) would accept."""
    prob = synthetic_prob
    W = np.zeros(prob.shape)
    f, g = model.loss_gradient(W, prob.X, prob.y, prob.lam)
    gg = float(np.vdot(g, g))
    assert f < model.loss(W - 30 / prob.L * g, prob.X, prob.y, prob.lam) < f + 0.5 * 30 / prob.L * gg
    for t0, c in ((1e4 / prob.L, 1e-4), (30 / prob.L, 1e-4), (3 / prob.L, 1e-4), (30 / prob.L, 0.5)):
        tr = Tracker("t", prob, verbose=False)
        W_new, t, _ = solvers.armijo(prob, W, f, g, -g, tr, t=t0, c=c)
        j = round(np.log2(t0 / t))
        assert t == pytest.approx(t0 * 0.5**j, rel=1e-12) and tr.cost == (j + 1) * prob.n
        f_new = model.loss(W_new, prob.X, prob.y, prob.lam)
        assert f_new <= f - c * t * gg  # sufficient decrease, so f went down
        if j > 0:  # the trial before (twice as long) did not decrease enough
            assert model.loss(W - 2 * t * g, prob.X, prob.y, prob.lam) > f - 2 * c * t * gg


def test_conjugate_gradient_solves_in_at_most_dim_steps():
    """CG (and Jacobi-preconditioned CG) on an SPD system of dimension 30 with condition number 100: the
    answer in about 30 steps (36 measured, rounding; steepest descent would need ~1000)."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    A = Q @ np.diag(np.logspace(0, 2, 30)) @ Q.T
    b = rng.standard_normal((5, 6))
    x_ref = np.linalg.solve(A, b.ravel()).reshape(5, 6)

    def hvp(V):
        return (A @ V.ravel()).reshape(V.shape)

    d = np.diag(A).reshape(5, 6)
    for precond in (None, lambda R: R / d):
        x, iters = solvers.conjugate_gradient(hvp, b, tol=1e-8 * np.linalg.norm(b), max_iter=500, precond=precond)
        assert iters <= 45
        np.testing.assert_allclose(x, x_ref, rtol=1e-5, atol=1e-7 * np.abs(x_ref).max())


def test_tracker_records_on_the_right_split(synthetic_prob):
    """One record: f, f - f*, ||grad f|| on the training set, train accuracy on train, test accuracy on the
    held-out split (a W where the two accuracies differ, so a swap shows), cost in passes."""
    prob = synthetic_prob
    W = np.random.default_rng(3).standard_normal(prob.shape)
    tr = Tracker("t", prob, verbose=False)
    tr.spend(prob.n / 2)
    rec = tr.record(W)
    f, g = model.loss_gradient(W, prob.X, prob.y, prob.lam)
    assert rec["f"] == f and rec["gap"] == f - prob.f_star and rec["grad_norm"] == np.linalg.norm(g)
    assert rec["train_acc"] == model.accuracy(W, prob.X, prob.y)
    assert rec["test_acc"] == model.accuracy(W, prob.X_test, prob.y_test) != rec["train_acc"]
    assert rec["passes"] == 0.5 and rec["grad_evals"] == prob.n / 2 and rec["iter"] == 0


def test_tracker_clock_stops_while_it_records(synthetic_prob, monkeypatch):
    """The README compares our times with scikit-learn's, which include no monitoring: the Tracker's clock
    counts the solver's seconds between records, never the f, gradient and accuracies a record evaluates.
    A fake clock: the solver takes 1 s before each record, each record's evaluation 100 s."""
    now = [0.0]
    tr = Tracker("t", synthetic_prob, verbose=False, clock=lambda: now[0])
    real = model.loss_gradient

    def slow_loss_gradient(*args):
        now[0] += 100.0
        return real(*args)
    monkeypatch.setattr(model, "loss_gradient", slow_loss_gradient)
    W = np.zeros(synthetic_prob.shape)
    assert tr.record(W)["time"] == 0.0  # the pass-0 record: clock not started
    tr.start()
    for k in range(1, 4):
        now[0] += 1.0
        assert tr.record(W)["time"] == k


def test_svrg_charges_only_the_inner_steps_it_takes(synthetic_prob):
    """m = 1.5 n, budget 4 passes: snapshot (1) + n steps -> record at 2, + n/2 steps -> 2.5; snapshot (3.5)
    + n steps -> 4.5 and the budget stops the loop. Nothing more is charged or recorded after that."""
    recs = run_method(synthetic_prob, "svrg", passes=4, svrg_inner=1.5)
    assert [r["passes"] for r in recs] == [0.0, 2.0, 2.5, 4.5]
    # an inner loop of one step (m = max(1, 1e-6 n)) still runs: snapshot (1) + one step each outer loop, a
    # record after each; the average of one inner iterate is that iterate, so both snapshot rules agree
    n = synthetic_prob.n
    one_step = {s: run_method(synthetic_prob, "svrg", passes=2, svrg_inner=1e-6, svrg_snapshot=s)
                for s in ("last", "average")}
    assert [r["passes"] for r in one_step["last"]] == pytest.approx([0.0, 1 + 1 / n, 2 + 2 / n], rel=1e-15)
    assert [r["f"] for r in one_step["average"]] == [r["f"] for r in one_step["last"]]
    assert one_step["last"][-1]["f"] < one_step["last"][0]["f"]


def test_svrg_average_snapshot_is_the_mean_of_the_inner_iterates():
    """On the one-sample problem the inner iterates are gradient steps W_t = W_{t-1} - eta grad f(W_{t-1})
    (the variance-reduced direction is the full gradient): with m = 3 steps the next snapshot, and the
    answer when the budget ends there, is (W_1 + W_2 + W_3) / 3, computed here directly."""
    prob = one_sample_problem()
    W0 = np.random.default_rng(0).standard_normal(prob.shape)
    eta = 0.5 / prob.L_max
    iterates = [W0]
    for _ in range(3):
        iterates.append(iterates[-1] - eta * model.gradient(iterates[-1], prob.X, prob.y, prob.lam))
    tr = Tracker("svrg", prob, verbose=False)
    W = solvers.svrg(prob, W0.copy(), SolverOptions(passes=4, svrg_inner=3, svrg_step=0.5, svrg_snapshot="average"),
                     tr, np.random.default_rng(0))
    np.testing.assert_allclose(W, np.mean(iterates[1:], axis=0), rtol=1e-12, atol=1e-14)
    assert not np.allclose(W, iterates[-1], rtol=1e-6)  # the mean, not the last iterate


def test_preconditioners(synthetic_prob):
    """The Kronecker preconditioner is the exact inverse of the W = 0 Hessian; Newton-CG reaches the same
    f* with each preconditioning choice."""
    prob = synthetic_prob
    K, D = prob.shape
    apply, _ = solvers.kronecker_preconditioner(prob.X, prob.lam, K)
    H0 = model.hessian(np.zeros((K, D)), prob.X, prob.y, prob.lam)
    V = np.random.default_rng(1).standard_normal((K, D))
    np.testing.assert_allclose(apply((H0 @ V.ravel()).reshape(K, D)), V, rtol=1e-9, atol=1e-9)
    for precondition in ("auto", "subsampled", "none"):
        recs = run_method(prob, "newton_cg", precondition=precondition, precond_size=200)
        assert recs[-1]["grad_norm"] <= 1e-10 and abs(recs[-1]["gap"]) <= 1e-12, precondition


def test_svrg_snapshot_average_and_minibatch_sampling(synthetic_prob):
    """SVRG with the averaged snapshot and the two minibatch samplers run and make progress on a small
    synthetic problem."""
    for method, extra in [("svrg", dict(svrg_snapshot="average")), ("minibatch_sgd", {}), ("minibatch_gd", {})]:
        recs = run_method(synthetic_prob, method, passes=10, batch_size=32, **extra)
        assert recs[-1]["gap"] < 0.2 * recs[0]["gap"], method




def test_minibatch_smoothness_interpolates_between_L_max_and_L():
    """L(b) = n(b-1)/(b(n-1)) L + (n-b)/(b(n-1)) L_max: L_max for one row, L for the whole set, and for
    n = 5, b = 2 by hand: 5/8 L + 3/8 L_max."""
    prob = LogisticProblem(np.zeros((5, 2)), np.zeros(5, int), None, None, 1.0, L=2.0, L_max=10.0)
    assert solvers.minibatch_smoothness(prob, 1) == 10.0 and solvers.minibatch_smoothness(prob, 5) == 2.0
    assert solvers.minibatch_smoothness(prob, 2) == pytest.approx(5 / 8 * 2 + 3 / 8 * 10, rel=1e-15)


def test_saga_table_mean_is_the_full_gradient_at_the_stored_points(synthetic_prob):
    """SAGA's invariant: after any sequence of steps, A_i = p_i(phi_i) and G = 1/n sum_i grad l_i(phi_i),
    phi_i the iterate at which row i was last used (recorded here by the test, each row's gradient
    recomputed with model.gradient one row at a time); and each step is W - eta (grad l_B(W) -
    grad l_B(phi_B) + G + lam W), the data part of the gradients again from model.gradient."""
    prob = synthetic_prob
    X, y, lam, n = prob.X, prob.y, prob.lam, prob.n
    rng = np.random.default_rng(1)
    W = rng.standard_normal(prob.shape)
    phi = np.repeat(W[None], n, axis=0)  # (n, K, D): every row stored at W0
    _, g, A = model.loss_gradient(W, X, y, lam, return_proba=True)
    G = g - lam * W

    def grad_l(V, rows):  # the mean data gradient of the rows at V
        return model.gradient(V, X[rows], y[rows], 0.0)

    eta = 0.05
    for epoch in range(2):
        batches = solvers.shuffled_batches(n, 48, rng)[: 5 + epoch]  # part of an epoch: rows stored at different W
        for idx in batches:
            direction = (grad_l(W, idx) - np.mean([grad_l(phi[i], [i]) for i in idx], axis=0)
                         + np.mean([grad_l(phi[i], [i]) for i in range(n)], axis=0) + lam * W)
            W_expected = W - eta * direction
            phi[idx] = W
            solvers.saga_step(W, A, G, idx, X, lam, eta)
            np.testing.assert_allclose(W, W_expected, rtol=1e-10, atol=1e-12)
    assert len({phi[i].tobytes() for i in range(n)}) > 5  # the table holds gradients at several points
    np.testing.assert_allclose(A, np.array([model.probabilities(phi[i], X[i:i + 1])[0] for i in range(n)]),
                               rtol=1e-12, atol=1e-15)
    direct = np.mean([grad_l(phi[i], [i]) for i in range(n)], axis=0)
    np.testing.assert_allclose(G, direct, rtol=1e-10, atol=1e-13)


@pytest.fixture(scope="module")
def digits_probs():
    """digits (n = 1347, D = 65, K = 10) at lam = 1e-2 and 1e-1, each with the f* that explicit Newton
    certifies (||grad f|| <= 1e-10)."""
    dataset = data.load_dataset("digits")
    probs = {}
    for lam in (1e-2, 1e-1):
        prob = LogisticProblem.from_dataset(dataset, lam)
        _, prob.f_star, g_star, *_ = solvers.solve_reference(prob, SolverOptions(), np.random.default_rng(0))
        assert g_star <= 1e-10
        probs[lam] = prob
    return probs


@pytest.mark.parametrize("method, passes", [("saga", 40), ("lsvrg", 60)])
def test_variance_reduced_methods_reach_the_certified_f_star_on_digits(digits_probs, method, passes):
    """With the default batch and step (tuned on MNIST), saga and lsvrg converge to f* on digits at
    lam = 1e-2: relative gap <= 1e-10 (measured: saga 5.6e-12 after 25 passes, lsvrg 3.6e-15 after 44),
    where a constant-step method without variance reduction would stall at its noise floor."""
    prob = digits_probs[1e-2]
    recs = run_method(prob, method, passes=passes)
    assert recs[-1]["gap"] <= 1e-10 * prob.f_star, recs[-1]["gap"]
    assert recs[-1]["grad_norm"] <= 1e-4


def test_variance_reduced_methods_keep_their_theory_rate_on_digits(digits_probs):
    """At the steps their theorems allow, on digits with lam = 0.1 (so the promised rate is not vacuous):

    saga (Gazagnadou, Gower & Salmon 2019, b-nice SAGA): eta = 1 / (4 max(L(b), (n-b)/(b(n-1)) L_max +
    lam n / (4b))), and E[Psi_k] <= (1 - lam eta)^k Psi_0 after k steps;
    lsvrg (Kovalev, Horvath & Richtarik 2020): eta = 1 / (6 L(b)), E[Phi_k] <= (1 - min(lam eta, q/2))^k Phi_0,
    q = b/n.

    The Lyapunov functions bound ||W - W*||^2 (with table / snapshot terms); the test checks the gap
    f - f* against the same geometric rate, f_k - f* <= 10 rho^k (f_0 - f*) at every epoch: the stated
    tolerance, 10, stands for the theorems' constants (Psi_0 against f_0 - f*, the gap against the distance)
    and one seed against an expectation. Measured, both are far faster than promised; with the snapshot or
    the table never refreshed (no variance reduction left) they stall and fail."""
    prob = digits_probs[1e-1]
    n, lam, b = prob.n, prob.lam, 16
    Lb = solvers.minibatch_smoothness(prob, b)
    per_epoch = -(-n // b)  # steps per epoch (the last batch shorter)
    eta = 1 / (4 * max(Lb, (n - b) / (b * (n - 1)) * prob.L_max + lam * n / (4 * b)))
    recs = run_method(prob, "saga", passes=41, vr_batch=b, vr_step=eta * Lb)
    rho = 1 - lam * eta
    for k, r in enumerate(recs[1:], start=1):  # record k: after k epochs (plus the table's pass)
        assert r["gap"] <= 10 * rho ** (k * per_epoch) * recs[0]["gap"], (k, r["gap"])
    assert rho ** (40 * per_epoch) < 1e-5 and recs[-1]["gap"] <= 1e-10 * prob.f_star  # not vacuous; converged

    eta = 1 / (6 * Lb)
    recs = run_method(prob, "lsvrg", passes=60, vr_batch=b, vr_step=eta * Lb)
    rho = 1 - min(lam * eta, b / n / 2)
    for k, r in enumerate(recs[1:-1], start=1):  # the last epoch may be cut short by the budget
        assert r["gap"] <= 10 * rho ** (k * per_epoch) * recs[0]["gap"], (k, r["gap"])
    assert rho ** ((len(recs) - 2) * per_epoch) < 1e-2
