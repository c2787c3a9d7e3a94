"""Training throughput of nas.train's tensor loop vs plain torch DataLoader loops.

Same model, same data, same optimizer step, in the same run; images per CPU-second
(time.process_time) over whole epochs after a warm-up epoch, best of --repeats interleaved
repeats. CPU time, not wall time, so that other processes on a shared machine do not skew the
ratio; with one thread (the default) it equals wall time on an idle machine. Baselines, all
with num_workers=0 (a proxy trial owns one core; workers would compete for it):

- PIL transforms: the classic torchvision dataset (uint8 images -> PIL -> RandomCrop(padding),
  RandomHorizontalFlip, ToTensor, Normalize per image, as torchvision.datasets.CIFAR10 does),
  then DataLoader collation. The usual way to train a small network with augmentation.
- v2 transforms: the same augmentation with torchvision.transforms.v2 on tensors, per image.
- no aug: DataLoader(TensorDataset) without any augmentation: pure loading overhead (it does
  less work than our loop, which still augments).

Models: the default digits space's all-conv reference network (what a digits proxy trains), and
small conv nets (stem + two stride-2 stages; width 16 and 32) on CIFAR-sized random tensors.

    python benchmarks/proxy_throughput.py            # 1 thread
    python benchmarks/proxy_throughput.py --threads 2 --clock wall --repeats 3

Target: ours >= 2x the PIL-transforms loop on digits and on CIFAR-sized tensors, on CPU.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms
from torchvision.transforms import v2

from nas.data import Dataset, load_dataset
from nas.train import TrainConfig, train

CLOCK = time.process_time  # --clock wall: time.perf_counter


def small_net(in_chans: int, num_classes: int, width: int = 32) -> nn.Module:
    """Stem conv, two stride-2 conv stages and a head: the shape of a small proxy network."""

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_chans, width // 2, 1),
        *block(width // 2, width, 2),
        *block(width, width, 1),
        *block(width, 2 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


class AugmentedImages(torch.utils.data.Dataset):
    """torchvision-style: one image per __getitem__, transformed on its own."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, padding: int, flip: bool):
        self.x, self.y = x, y
        steps = [v2.RandomCrop(x.shape[-1], padding=padding)]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.x[i]), self.y[i]


class PILImages(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10-style: uint8 arrays, a PIL image and a transform per item."""

    def __init__(self, data: Dataset, padding: int, flip: bool):
        mean, std = torch.tensor(data.mean).view(-1, 1, 1), torch.tensor(data.std).view(-1, 1, 1)
        pixels = (data.train_x * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
        self.images = pixels.permute(0, 2, 3, 1).numpy()  # N x H x W x C, as distributed
        if data.in_chans == 1:
            self.images = self.images[..., 0]
        self.y = data.train_y.tolist()
        steps = [transforms.RandomCrop(data.image_size, padding=padding)]
        if flip:
            steps.append(transforms.RandomHorizontalFlip())
        self.transform = transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.y[i]


def loader_loop(model: nn.Module, loader: DataLoader, epochs: int, lr: float) -> float:
    """images per CPU-second of a plain loop (SGD + cross-entropy), after a warm-up epoch."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    model.train()
    images, t0 = 0, 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            images, t0 = 0, CLOCK()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            images += len(yb)
    return images / (CLOCK() - t0)


def our_loop(model: nn.Module, data: Dataset, epochs: int, cfg: TrainConfig) -> float:
    """images per CPU-second of nas.train.train (no validation split: only training runs)."""
    n = (len(data.train_y) // cfg.batch_size) * cfg.batch_size
    run = train(model, data, TrainConfig(**{**cfg.__dict__, "epochs": epochs + 1}))
    next(run)  # warm-up epoch
    t0 = CLOCK()
    for _ in run:
        pass
    return n * epochs / (CLOCK() - t0)


def cifar_sized(n: int, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    empty = x[:0]
    return Dataset(
        "cifar-sized random",
        x,
        y,
        empty,
        y[:0],
        empty,
        y[:0],
        num_classes=10,
        in_chans=3,
        image_size=32,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        default_augment="crop+flip",
    )


def digits_proxy_net() -> nn.Module:
    """The default space's (search_spaces/digits.yaml) all-conv reference network."""
    from pathlib import Path

    from nas.net.model import create_model
    from nas.space import SearchSpace

    space = Path(__file__).resolve().parents[1] / "search_spaces" / "digits.yaml"
    return create_model(SearchSpace.from_yaml(space).reference_points()["all_conv"], num_classes=10)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs (after one warm-up)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats; best is shown")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cifar-images", type=int, default=1024)
    p.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: process CPU time (robust on a shared machine); wall: elapsed time "
        "(use with --threads > 1 on an idle machine)",
    )
    args = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)

    digits = load_dataset("digits", val_fraction=0.0)
    digits = Dataset(**{**digits.__dict__, "test_x": digits.test_x[:0], "test_y": digits.test_y[:0]})
    cifar = cifar_sized(args.cifar_images)
    cases = [
        ("digits 1x16x16", digits, "digits all-conv", digits_proxy_net),
        ("digits 1x16x16", digits, "small_net w32", lambda: small_net(1, 10, 32)),
        ("cifar-sized 3x32x32", cifar, "small_net w16", lambda: small_net(3, 10, 16)),
        ("cifar-sized 3x32x32", cifar, "small_net w32", lambda: small_net(3, 10, 32)),
    ]
    cfg = TrainConfig(batch_size=args.batch_size, lr=0.05, weight_decay=0.0, label_smoothing=0.0, warmup_epochs=0)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, "
        f"{args.epochs} timed epoch(s), best of {args.repeats}; images per "
        f"{'CPU-' if args.clock == 'cpu' else ''}second (higher is better)"
    )
    header = (
        f"{'data':20} {'model':16} {'ours':>7} {'PIL tf':>7} {'v2 tf':>7} {'no aug':>7} "
        f"{'ours/PIL':>9} {'ours/v2':>8} {'ours/noaug':>10}"
    )
    print(header)
    print("-" * len(header))
    t_start = time.perf_counter()
    for name, data, model_name, make in cases:
        torch.manual_seed(0)
        base = make()
        padding = max(1, data.image_size // 8)
        flip = "flip" in data.default_augment
        loaders = [
            DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True)
            for ds in (
                PILImages(data, padding, flip),
                AugmentedImages(data.train_x, data.train_y, padding, flip),
                TensorDataset(data.train_x, data.train_y),
            )
        ]
        best = [0.0] * 4
        for _ in range(args.repeats):
            rates = [our_loop(copy.deepcopy(base), data, args.epochs, cfg)]
            rates += [loader_loop(copy.deepcopy(base), ld, args.epochs, cfg.lr) for ld in loaders]
            best = [max(b, r) for b, r in zip(best, rates)]
        ours, pil, tv2, plain = best
        print(
            f"{name:20} {model_name:16} {ours:>7.0f} {pil:>7.0f} {tv2:>7.0f} {plain:>7.0f} "
            f"{ours / pil:>8.2f}x {ours / tv2:>7.2f}x {ours / plain:>9.2f}x",
            flush=True,
        )
    print(f"({time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
