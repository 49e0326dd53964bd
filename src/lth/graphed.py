"""LeNet-300-100's training loop on CUDA as captured CUDA graphs: no launch overhead, no sync.

A LeNet step at batch 60 is about 0.1 GFLOP, microseconds of a GPU's time; run eagerly, its
cost is some forty kernel launches and the Python around them, and every host-device
synchronisation stalls the queue. Here one training iteration is a function over static
device buffers, captured once (torch.cuda.graph, after one eager iteration on a side stream
has created every tensor it touches) and replayed once per iteration:

- the batch order is the CPU's (loop.BatchOrder, drawn on the host), so the batches are the
  same: the indices of the iterations up to the host's next event (an evaluation record, a
  checkpoint, the rewind snapshot, a full train.Window) are drawn at once and copied into a
  device table;
- the iteration reads its row of the table through a device counter, gathers images and
  labels into static buffers, runs the step (mlp_step.MLPStep, dense layers) and writes
  logits and labels into the window's slot named by a second device counter;
- the evaluation pass (validation and test, in loop.evaluate's chunks) sums each split's
  loss in float64, in the order loop.evaluate's Python sum adds, and counts its correct
  answers on the device, also as a captured graph; the host reads the sums once per record.

The host keeps the counters' values itself (Window.filled, the segment's length), so nothing
in the loop calls .item(), and checkpoints, the rewind snapshot and the records happen at
the iterations where train.train's eager loop has them. Run without capture (the CPU; tests
force it there) the same functions give the eager loop's bits; on CUDA both paths run the
same kernels in the same order.

train.train takes this loop where `applies`: a CUDA device, the LeNet step, a constant
learning rate and no augmentation (a schedule or augmentation would put host values or
fresh random draws into every iteration). `runtime.cuda_graphs: false` turns it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from lth import mlp_step, optim
from lth.loop import EVALUATION_BATCH, BatchOrder, Split
from lth.params import TrainParams

if TYPE_CHECKING:
    from lth.train import Window


def supports(model: torch.nn.Module, mask: dict[str, torch.Tensor], recipe: TrainParams) -> bool:
    """Whether this loop can train it: the LeNet step at a constant learning rate, no augmentation."""
    return mlp_step.supports(model, mask) and optim.Schedule.of(recipe).constant and not recipe.augment


def applies(device, model: torch.nn.Module, mask: dict[str, torch.Tensor], recipe: TrainParams) -> bool:
    """Whether train.train runs this loop by default (`device`: anything with a `.type`)."""
    return device.type == "cuda" and supports(model, mask, recipe)


def segment_end(iteration: int, last: int, every: tuple[int, ...], at: int | None, room: int) -> int:
    """The first iteration after `iteration` at which the host acts: the last one, the next
    multiple of each of `every` (evaluations, checkpoints), `at` (the rewind snapshot), or
    the one that fills the window's `room` slots."""
    ends = [last, iteration + room, *((iteration // e + 1) * e for e in every)]
    if at is not None and at > iteration:
        ends.append(at)
    return min(ends)


def captured(function) -> torch.cuda.CUDAGraph:
    """Run `function` once eagerly on a side stream (its tensors, the optimizer's state and
    cuBLAS's workspace then exist), then capture it (torch.cuda.graph captures on a side
    stream of its own); the eager run counts, the capture runs nothing."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        function()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        function()
    return graph


class Graphed:
    """The training iterations and evaluation passes of one training (module docstring).
    capture=False runs the same functions eagerly (the CPU)."""

    def __init__(self, step: mlp_step.MLPStep, train: Split, evaluated: dict[str, Split], window: Window,
                 capture: bool):
        """evaluated: the splits to evaluate, as step.logits takes them (features-major)."""
        device = train.images.device
        if window.logits is None:
            window.allocate(step.layers[-1].out_features)
        rows, batch = window.labels.shape
        self.step, self.train, self.evaluated, self.window, self.capture = step, train, evaluated, window, capture
        self.table = torch.zeros(rows, batch, dtype=torch.long, device=device)  # a segment's batch indices
        self.row = torch.zeros(1, dtype=torch.long, device=device)  # the table's row of the next iteration
        self.slot = torch.zeros(1, dtype=torch.long, device=device)  # the window's slot of the next iteration
        self.images = torch.empty((batch, *train.images.shape[1:]), device=device)
        self.labels = torch.empty(batch, dtype=torch.long, device=device)
        self.sums = torch.zeros(len(evaluated), 2, dtype=torch.float64, device=device)  # loss sum, correct
        self.graphs: dict[str, torch.cuda.CUDAGraph] = {}

    @torch.no_grad()
    def iterate(self) -> None:
        """One training iteration, all on the device."""
        idx = self.table.index_select(0, self.row).view(-1)
        self.row.add_(1)
        torch.index_select(self.train.labels, 0, idx, out=self.labels)
        torch.index_select(self.train.images, 0, idx, out=self.images)
        logits = self.step(self.images, self.labels)
        self.window.labels.index_copy_(0, self.slot, self.labels[None])
        self.window.logits.index_copy_(0, self.slot, logits[None])
        self.slot.add_(1)

    @torch.no_grad()
    def evaluate_all(self) -> None:
        """Each evaluated split's loss sum and correct count into `sums`, as loop.evaluate
        computes them: chunk by chunk, each chunk's float32 loss sum added in float64."""
        self.sums.zero_()
        for sums, split in zip(self.sums, self.evaluated.values(), strict=True):
            n = len(split.labels)
            for start in range(0, n, EVALUATION_BATCH):
                logits = self.step.logits(split.images.narrow(1, start, min(EVALUATION_BATCH, n - start)))
                labels = split.labels[start:start + EVALUATION_BATCH]
                sums[0].add_(F.cross_entropy(logits, labels, reduction="sum").double())
                sums[1].add_((logits.argmax(1) == labels).sum())

    def run(self, function) -> None:
        """Call `function` (a bound method of this object): on CUDA its graph's replay, captured
        at the first call."""
        if not self.capture:
            function()
        elif function.__name__ in self.graphs:
            self.graphs[function.__name__].replay()
        else:
            self.graphs[function.__name__] = captured(function)

    def train_segment(self, order: BatchOrder, iterations: int) -> None:
        """The next `iterations` training iterations (they must fit the window's free slots):
        their batches drawn from `order` and copied to the device at once, then one replay each."""
        indices = torch.stack([order.next() for _ in range(iterations)])
        if self.capture:  # pinned: the copy is queued behind the running replays, without waiting
            indices = indices.pin_memory()
        self.table[:iterations].copy_(indices, non_blocking=True)
        self.row.zero_()
        self.slot.fill_(self.window.filled)
        for _ in range(iterations):
            self.run(self.iterate)
        self.window.advance(iterations)

    def evaluate(self) -> dict[str, tuple[float, float]]:
        """Mean loss and accuracy of each evaluated split (loop.evaluate's values): one sync."""
        self.run(self.evaluate_all)
        sums = self.sums.tolist()
        return {name: (loss / len(split.labels), int(correct) / len(split.labels))
                for (name, split), (loss, correct) in zip(self.evaluated.items(), sums, strict=True)}
