import numpy as np
import pytest

from lth import masks, reset


def test_ticket_is_theta0_on_survivors_and_zero_elsewhere():
    rng = np.random.default_rng(1)
    theta0 = {"fc1.weight": rng.normal(size=(4, 5)).astype(np.float32),
              "fc1.bias": rng.normal(size=4).astype(np.float32)}
    mask = {"fc1.weight": rng.random((4, 5)) < 0.4}
    ticket = reset.ticket(theta0, mask)
    m = mask["fc1.weight"]
    assert np.array_equal(ticket["fc1.weight"][m], theta0["fc1.weight"][m])
    assert np.all(ticket["fc1.weight"][~m] == 0)
    assert np.array_equal(ticket["fc1.bias"], theta0["fc1.bias"])  # biases back to init too
    assert ticket["fc1.weight"].dtype == np.float32


W0 = np.array([[0.5, -0.2, 0.1, -0.4], [0.3, -0.6, 0.2, 0.05]], np.float32)
M = np.array([[True, True, False, True], [False, True, True, False]])
STD = reset.glorot_std(W0.shape)  # sqrt(2 / (4 + 2))


def action(kept, seed=0):
    return reset.ticket({"fc1.weight": W0, "fc1.bias": np.ones(2, np.float32)}, {"fc1.weight": M}, kept, seed)


def test_glorot_std_of_a_layer():
    assert STD == pytest.approx(np.sqrt(2 / 6))
    assert reset.glorot_std((64, 3, 3, 3)) == pytest.approx(np.sqrt(2 / (27 + 576)))


@pytest.mark.parametrize("kept", sorted(reset.ACTIONS))
def test_every_action_zeroes_pruned_weights_and_keeps_biases(kept):
    t = action(kept)
    assert np.all(t["fc1.weight"][~M] == 0) and np.all(t["fc1.weight"][M] != 0)
    assert np.array_equal(t["fc1.bias"], np.ones(2))
    assert np.array_equal(t["fc1.weight"], action(kept)["fc1.weight"])  # seeded


def test_original_is_the_ticket():
    assert np.array_equal(action("original")["fc1.weight"][M], W0[M])


def test_reshuffles_permute_the_kept_values_and_signed_ones_keep_signs():
    shuffled = action("random_reshuffle", seed=3)["fc1.weight"][M]
    assert sorted(shuffled) == sorted(W0[M]) and not np.array_equal(shuffled, W0[M])
    signed = action("signed_reshuffle", seed=3)["fc1.weight"][M]
    assert np.array_equal(np.sign(signed), np.sign(W0[M]))
    assert sorted(np.abs(signed)) == sorted(np.abs(W0[M]))


def test_signed_constant_and_random_signs():
    const = action("signed_constant")["fc1.weight"][M]
    assert np.allclose(const, np.sign(W0[M]) * STD)
    rand = np.concatenate([action("rand_signed_constant", s)["fc1.weight"][M] for s in range(5)])
    assert np.allclose(np.abs(rand), STD) and (rand > 0).any() and (rand < 0).any()


def test_reinits_draw_fresh_magnitudes():
    fresh = action("random_reinit", seed=1)["fc1.weight"][M]
    assert not np.isin(fresh, W0[M]).any()
    signed = action("signed_reinit", seed=1)["fc1.weight"][M]
    assert np.array_equal(np.sign(signed), np.sign(W0[M])) and not np.isin(np.abs(signed), np.abs(W0[M])).any()


# Mask-0 actions on hand-made weights: start W0, trained WT (|WT| < |W0| where "fell").
WT = np.array([[0.9, -0.1, 0.0, -0.5], [0.1, -0.7, 0.3, -0.3]], np.float32)
FELL = np.abs(WT) < np.abs(W0)  # [[F, T, T, F], [T, F, F, F]]


def pruned_action(pruned, kept="original"):
    return reset.ticket({"fc1.weight": W0}, {"fc1.weight": M}, kept, 0, pruned, {"fc1.weight": WT})["fc1.weight"]


def test_freeze_init_keeps_pruned_weights_at_their_start():
    t = pruned_action("freeze_init")
    assert np.array_equal(t, W0)  # kept: original; pruned: frozen at start
    assert np.array_equal(pruned_action("freeze_init", "signed_constant")[~M], W0[~M])


def test_variant1_zeroes_pruned_weights_that_fell_and_freezes_the_rest():
    t = pruned_action("variant1")
    # pruned positions: (0,2) fell -> 0; (1,0) fell -> 0; (1,3) grew -> frozen at W0
    assert t[0, 2] == 0 and t[1, 0] == 0 and t[1, 3] == W0[1, 3]
    assert np.array_equal(t[M], W0[M])  # kept weights untouched


def test_variant2_also_starts_kept_weights_that_fell_at_zero():
    t = pruned_action("variant2")
    assert np.array_equal(t[~M], pruned_action("variant1")[~M])
    # kept positions: (0,1) fell -> 0; the others keep W0
    assert t[0, 1] == 0
    assert np.array_equal(t[M & ~FELL], W0[M & ~FELL])


def test_variants_need_the_trained_weights_and_unknown_actions_fail():
    with pytest.raises(ValueError, match="needs the trained weights"):
        reset.ticket({"fc1.weight": W0}, {"fc1.weight": M}, pruned="variant1")
    with pytest.raises(ValueError, match="unknown mask-0 action 'frozen'"):
        reset.ticket({"fc1.weight": W0}, {"fc1.weight": M}, pruned="frozen")


def test_kaiming_std_and_the_init_the_random_actions_draw_from():
    assert reset.kaiming_std((64, 3, 3, 3)) == pytest.approx(np.sqrt(2 / 27))
    assert reset.kaiming_std(W0.shape) == pytest.approx(np.sqrt(2 / 4))
    big = np.ones((256, 512), np.float32)
    for init in reset.INIT_STD:
        fresh = reset.ticket({"fc1.weight": big}, {"fc1.weight": big > 0}, "random_reinit", 0, init=init)
        assert fresh["fc1.weight"].std() == pytest.approx(reset.INIT_STD[init](big.shape), rel=0.01)
        constant = reset.ticket({"fc1.weight": W0}, {"fc1.weight": M}, "signed_constant", init=init)["fc1.weight"]
        assert np.allclose(np.abs(constant[M]), reset.INIT_STD[init](W0.shape))


# A ResNet-like set of arrays: conv and output weights, BatchNorm scale, shift and statistics.
def bn_arrays(scale, mean, count):
    rng = np.random.default_rng(int(count))
    return {"conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
            "bn.weight": np.full(4, scale, np.float32), "bn.bias": np.full(4, scale - 1, np.float32),
            "bn.running_mean": np.full(4, mean, np.float32), "bn.running_var": np.full(4, 1 + mean, np.float32),
            "bn.num_batches_tracked": np.array([count]),
            "output.weight": rng.normal(size=(10, 4)).astype(np.float32), "output.bias": np.zeros(10, np.float32)}


THETA0 = bn_arrays(1.0, 0.0, 0)
REWIND = bn_arrays(0.7, 0.3, 500)  # round 0's weights at the rewind iteration
TRAINED = bn_arrays(0.4, 0.9, 3000)
BN_MASK = {"conv.weight": np.random.default_rng(1).random((4, 3, 3, 3)) < 0.5, "output.weight": np.ones((10, 4), bool)}


@pytest.mark.parametrize("kept", sorted(reset.ACTIONS))
@pytest.mark.parametrize("pruned", reset.PRUNED_ACTIONS)
def test_batchnorm_is_reset_with_the_weights_to_the_start(kept, pruned):
    """Scale, shift and running statistics go back to where the weights go: theta_0 or the
    rewind point, never the trained values; they are never in a mask."""
    assert set(BN_MASK) == set(masks.dense(THETA0))
    for start in (THETA0, REWIND):
        t = reset.ticket(start, BN_MASK, kept, 3, pruned, TRAINED, init="kaiming_normal")
        for name in start:
            if name.startswith("bn."):
                assert np.array_equal(t[name], start[name]) and t[name].dtype == start[name].dtype, name


@pytest.mark.parametrize("init", sorted(reset.INIT_STD))
def test_the_reinit_control_restarts_batchnorm_from_its_init(init):
    """Glorot: scale 1 (theta_0's); Kaiming (open_lth): a fresh U(0, 1) scale. Shift and
    running statistics at their initial values, the weights drawn afresh."""
    t = reset.reinit(THETA0, BN_MASK, seed=11, init=init)
    for name in ("bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "output.bias"):
        assert np.array_equal(t[name], THETA0[name]), name
    if init == "glorot_normal":
        assert np.array_equal(t["bn.weight"], THETA0["bn.weight"])
    else:
        assert (0 <= t["bn.weight"]).all() and (t["bn.weight"] < 1).all() and len(np.unique(t["bn.weight"])) == 4
        assert np.array_equal(t["bn.weight"], reset.reinit(THETA0, BN_MASK, seed=11, init=init)["bn.weight"])
    m = BN_MASK["conv.weight"]
    assert np.all(t["conv.weight"][~m] == 0) and not np.isin(t["conv.weight"][m], THETA0["conv.weight"]).any()
