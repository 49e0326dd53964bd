"""Batch augmentation: crops and flips exactly as drawn, black padding, seeded streams."""

import numpy as np
import pytest
import torch

from lth import augment, loop
from lth.artifacts import save_arrays


def draws(seed: int, n: int, padding: int):
    """The offsets and flips an Augment of `seed` draws for a batch of n, in its order."""
    g = torch.Generator().manual_seed(augment.generator_seed(seed))
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=g)
    flips = torch.randint(0, 2, (n, 1), generator=g, dtype=torch.bool)
    return offsets.numpy(), flips[:, 0].numpy()


def by_hand(images: np.ndarray, offsets, flips, padding: int, black) -> np.ndarray:
    """One example at a time: pad with black, cut the window at the offsets, mirror it."""
    out = []
    n, c, h, w = images.shape
    for image, (dy, dx), flip in zip(images, offsets, flips, strict=True):
        padded = np.empty((c, h + 2 * padding, w + 2 * padding), dtype=images.dtype)
        padded[:] = np.asarray(black, dtype=images.dtype).reshape(c, 1, 1)
        padded[:, padding:padding + h, padding:padding + w] = image
        crop = padded[:, dy:dy + h, dx:dx + w]
        out.append(crop[:, :, ::-1] if flip else crop)
    return np.stack(out)


def test_a_hand_made_batch_is_cropped_and_flipped_as_drawn():
    # 2 channels of 3 x 5 distinct values; padding 2 so that whole rows and columns fall off
    images = torch.arange(64 * 2 * 3 * 5, dtype=torch.float32).reshape(64, 2, 3, 5)
    black = torch.tensor([-1.0, -2.0])
    out = augment.Augment(seed=5, black=black, padding=2)(images)
    offsets, flips = draws(5, 64, 2)
    assert set(offsets.flatten()) == {0, 1, 2, 3, 4} and set(flips) == {False, True}  # every case occurs
    assert np.array_equal(out.numpy(), by_hand(images.numpy(), offsets, flips, 2, black.numpy()))
    assert out.shape == images.shape
    # spelled out for the first example: offsets (dy, dx), then the mirror if drawn
    dy, dx = offsets[0]
    row = lambda y: [float(images[0, 0, y - 2, x - 2]) if 0 <= y - 2 < 3 and 0 <= x - 2 < 5 else -1.0  # noqa: E731
                     for x in range(dx, dx + 5)]
    expected = [row(y)[::-1] if flips[0] else row(y) for y in range(dy, dy + 3)]
    assert out[0, 0].tolist() == expected


def test_the_centre_crop_unflipped_is_the_image():
    images = torch.randn(1000, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = augment.Augment(seed=1)(images)
    offsets, flips = draws(1, 1000, augment.PADDING)  # 1 in 162 is the centre, unflipped
    same = (offsets == augment.PADDING).all(1) & ~flips
    assert same.any() and torch.equal(out[same], images[same])
    assert not torch.equal(out[~same], images[~same])
    assert torch.all(out[(offsets[:, 0] == 0)][:, :, :augment.PADDING] == 0)  # top rows from the zero padding


def test_the_draws_are_reproducible_per_seed_and_differ_between_seeds():
    images = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b, c = augment.Augment(3), augment.Augment(3), augment.Augment(4)
    first = [a(images) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(first, [b(images) for _ in range(3)], strict=True))
    assert not torch.equal(first[0], c(images))
    assert not torch.equal(first[0], first[1])  # a new draw for every batch
    # a stream of its own, not the batch order's (seeded by the seed itself)
    assert augment.generator_seed(3) not in (3, augment.generator_seed(4))
    # and one per round of the trial
    round_two = augment.Augment(3, round_index=2)
    assert not torch.equal(first[0], round_two(images))
    assert torch.equal(augment.Augment(3, round_index=2)(images), augment.Augment(3, round_index=2)(images))


def test_the_state_resumes_the_stream():
    images = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = augment.Augment(9)
    a(images)
    saved = a.state()
    expected = [a(images) for _ in range(2)]
    b = augment.Augment(0)
    b.load(saved)
    assert all(torch.equal(x, b(images)) for x in expected)


@pytest.mark.parametrize("normalize, black", [("standardize", [-0.5 / 0.25, -0.2 / 0.5]), ("unit_range", [0.0, 0.0]),
                                              ("l2_per_example", [0.0, 0.0])])
def test_the_padding_is_a_black_pixel_as_normalized(tmp_path, normalize, black):
    """torchvision pads before normalizing: the padding is what a zero pixel becomes."""
    rng = np.random.default_rng(0)
    arrays = {"normalization": np.array([[0.5, 0.2], [0.25, 0.5]])}
    for split in ("train", "validation", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (4, 2, 6, 6)).astype(np.uint8)
        arrays[f"{split}_labels"] = np.arange(4)
    save_arrays(tmp_path / "prepared.safetensors", arrays)
    split = loop.load_splits(tmp_path / "prepared.safetensors", torch.device("cpu"), normalize)["train"]
    assert split.black.tolist() == pytest.approx(black)
    images = split.images.repeat(16, 1, 1, 1)
    out = augment.Augment(0, split.black)(images)
    offsets, _ = draws(0, len(images), augment.PADDING)
    top = offsets[:, 0] == 0  # rows 0-3 come from the padding
    assert top.any()
    assert torch.equal(out[top][:, :, :augment.PADDING], split.black.view(1, 2, 1, 1).expand(int(top.sum()), 2, 4, 6))
