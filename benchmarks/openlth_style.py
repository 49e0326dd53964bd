"""An open_lth-style LeNet-300-100 training, the baseline that bench.py times `lth train` against.

    python benchmarks/openlth_style.py --data data/prepared/mnist.safetensors --iterations 2000

Written the way open_lth (facebookresearch/open_lth) trains, without depending on its
repository: MNIST as a torch Dataset whose examples are converted one by one (a PIL image,
ToTensor, Normalize: open_lth's ImageDataset) and batched by a torch DataLoader (batch 60,
a seeded shuffle each epoch, no worker processes, open_lth's default); nn.Linear layers and
autograd; torch.optim.Adam; the mask applied to the weights in a separate pass after every
step (open_lth multiplies the weights by the mask before every forward pass: the same one pass
an iteration); validation and test evaluated every `--eval-every` iterations and at iteration
0 through DataLoaders of the same batch size and transforms. It reads the same prepared file
as `lth train` (the `data` stage's safetensors) and trains the same settings: LeNet-300-100,
Adam 1.2e-3, batch 60, dense. The final weights are written to `--out` if given.

With LTH_STARTUP_LOG set it appends "ready" and "first_step" marks to that file, as `lth`'s
stages do (src/lth/loop.py), so bench.py times its start-up the same way.
"""

from __future__ import annotations

import argparse
import os
import time


def mark(event: str) -> None:
    if path := os.environ.get("LTH_STARTUP_LOG"):
        with open(path, "a") as log:
            log.write(f"{event} {time.time()!r}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared MNIST (.safetensors from `lth data`)")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1.2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="final weights (.safetensors)")
    args = parser.parse_args()

    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from safetensors.numpy import load_file, save_file
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    arrays = load_file(args.data)
    mean, std = (float(v[0]) for v in arrays["normalization"])

    class MNIST(torch.utils.data.Dataset):
        """Examples converted one at a time, as open_lth's ImageDataset.__getitem__."""

        def __init__(self, images: np.ndarray, labels: np.ndarray):
            self.images, self.labels = images[:, 0], labels
            self.transform = torchvision.transforms.Compose(
                [torchvision.transforms.ToTensor(), torchvision.transforms.Normalize(mean=[mean], std=[std])])

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, index: int):
            return self.transform(Image.fromarray(self.images[index], mode="L")), int(self.labels[index])

    class ShuffleSampler(torch.utils.data.Sampler):
        """A seeded permutation per epoch (open_lth's ShuffleSampler)."""

        def __init__(self, n: int):
            self.n, self.seed = n, None

        def __iter__(self):
            return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist())

        def __len__(self) -> int:
            return self.n

    def loader(split: str, sampler=None) -> torch.utils.data.DataLoader:
        dataset = MNIST(arrays[f"{split}_images"], arrays[f"{split}_labels"])
        return torch.utils.data.DataLoader(dataset, args.batch_size, sampler=sampler, num_workers=0)

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                          nn.Linear(100, 10))
    mask = {p: torch.ones_like(p) for name, p in model.named_parameters() if name.endswith("weight")}
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    sampler = ShuffleSampler(len(arrays["train_labels"]))
    train = loader("train", sampler)
    evaluations = {split: loader(split) for split in ("validation", "test")}

    def evaluate() -> dict[str, tuple[float, float]]:
        model.eval()
        results = {}
        with torch.no_grad():
            for split, batches in evaluations.items():
                total_loss, correct, n = 0.0, 0, 0
                for images, labels in batches:
                    logits = model(images)
                    total_loss += loss_fn(logits, labels).item() * len(labels)
                    correct += (logits.argmax(1) == labels).sum().item()
                    n += len(labels)
                results[split] = (total_loss / n, correct / n)
        model.train()
        return results

    mark("ready")
    curve = [evaluate()]
    mark("first_step")
    iteration, epoch = 0, 0
    while iteration < args.iterations:
        sampler.seed = args.seed * 100_000 + epoch
        for images, labels in train:
            optimizer.zero_grad()
            loss_fn(model(images), labels).backward()
            optimizer.step()
            with torch.no_grad():
                for p, m in mask.items():
                    p.mul_(m)
            iteration += 1
            if iteration % args.eval_every == 0 or iteration == args.iterations:
                curve.append(evaluate())
            if iteration == args.iterations:
                break
        epoch += 1
    print(f"openlth_style: {args.iterations} iterations, {len(curve)} evaluations, "
          f"test accuracy {curve[-1]['test'][1]:.4f}")
    if args.out:
        save_file({name: p.detach().numpy() for name, p in model.named_parameters()}, args.out)


if __name__ == "__main__":
    main()
