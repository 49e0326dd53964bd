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
