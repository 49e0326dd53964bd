import numpy as np
import pytest

from lth import reset


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
