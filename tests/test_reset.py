import numpy as np

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
