"""A grid-point evaluator that works the way the paper's public reference code does.

It is the baseline of ``point_speed.py``: the per-point cost users see when
they migrate from the reference scripts. It is written for this benchmark
(nothing of the reference is copied) but keeps every habit that decides the
reference's speed:

* weights are set by building θ* + α·δ + β·η per tensor on the host and
  assigning it (``p.data = w + d``): fresh tensors and a host-to-device copy
  at every point;
* the data go through a ``torch.utils.data.DataLoader`` that is iterated anew
  at every point (so its worker processes start anew), over a Dataset that
  turns each uint8 HWC image into a PIL image and applies
  ``transforms.ToTensor()`` and ``transforms.Normalize(...)`` per image, as
  torchvision's CIFAR10 does; batch 128, fixed order;
* the loss is accumulated on the host, ``loss.item() * batch_size`` and
  ``correct.item()`` per batch: one host-device synchronization per batch;
* fp32, ``net.eval()``, no gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

REFERENCE_BATCH_SIZE = 128
REFERENCE_WORKERS = 2  # the reference's default --threads


class UInt8Images(Dataset):
    """CIFAR-shaped uint8 HWC images with labels, transformed one image at a time on access."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: tuple, std: tuple):
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class ReferenceStyleEvaluator:
    """Loss and accuracy (%) of ``net`` at θ* + α·δ + β·η, computed as the reference does.

    ``x_dir``/``y_dir`` are per-parameter directions in ``net.parameters()``
    order (``dir_type="weights"``); they stay on the host, as directions read
    from the reference's HDF5 files do. ``net`` is modified: give it a copy.
    """

    def __init__(self, net: nn.Module, x_dir: list[torch.Tensor], y_dir: list[torch.Tensor] | None,
                 dataset: Dataset, batch_size: int = REFERENCE_BATCH_SIZE,
                 num_workers: int = REFERENCE_WORKERS, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self.weights = [p.data.clone() for p in self.net.parameters()]
        self.x_dir = [d.cpu() for d in x_dir]
        self.y_dir = [d.cpu() for d in y_dir] if y_dir is not None else None
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        self.criterion = nn.CrossEntropyLoss()

    def set_weights(self, alpha: float, beta: float) -> None:
        """Assign θ* + α·δ + β·η to every parameter, the step built on the host per point."""
        if self.y_dir is None:
            changes = [dx * alpha for dx in self.x_dir]
        else:
            changes = [dx * alpha + dy * beta for dx, dy in zip(self.x_dir, self.y_dir)]
        for p, w, d in zip(self.net.parameters(), self.weights, changes):
            p.data = w + d.to(w.device, w.dtype)

    def __call__(self, alpha: float, beta: float = 0.0) -> dict[str, float]:
        """``{"train_loss": ..., "train_acc": ...}`` at (alpha, beta)."""
        self.set_weights(alpha, beta)
        self.net.eval()
        total_loss, correct, total = 0.0, 0, 0
        with torch.no_grad():
            for inputs, targets in self.loader:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                batch_size = inputs.size(0)
                outputs = self.net(inputs)
                total_loss += self.criterion(outputs, targets).item() * batch_size
                correct += outputs.argmax(dim=1).eq(targets).sum().item()
                total += batch_size
        return {"train_loss": total_loss / total, "train_acc": 100.0 * correct / total}


class ReferenceStyleHessian(ReferenceStyleEvaluator):
    """λmax and λmin of the Hessian at a grid point, found the way the reference's Hessian script does.

    On top of the loss point's habits: every Hessian-vector product iterates
    the DataLoader anew and sums the per-batch products of the batch-mean loss
    (so its eigenvalues are those of the mean loss times the number of
    batches), the vector crosses host and device at every product, and
    ``scipy.sparse.linalg.eigsh`` finds λmax, then λmin by a shifted run
    (the largest-magnitude eigenvalue of H − λmax·I).
    """

    def __init__(self, *args, tol: float = 1e-3, **kwargs):
        super().__init__(*args, **kwargs)
        self.tol = tol
        self.products = 0

    def _product(self, v: np.ndarray) -> np.ndarray:
        params = list(self.net.parameters())
        pieces, offset = [], 0
        for p in params:
            pieces.append(torch.from_numpy(v[offset:offset + p.numel()]).view(p.shape).to(p.device, p.dtype))
            offset += p.numel()
        total = [torch.zeros_like(p) for p in params]
        for inputs, targets in self.loader:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            loss = self.criterion(self.net(inputs), targets)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            hv = torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, pieces)), params)
            total = [t + h for t, h in zip(total, hv)]
        self.products += 1
        return torch.cat([t.reshape(-1) for t in total]).cpu().double().numpy()

    def eigenvalues(self, alpha: float, beta: float = 0.0) -> dict[str, float]:
        """``{"max_eig", "min_eig"}`` at (alpha, beta), summed over batches as the reference has them."""
        from scipy.sparse.linalg import LinearOperator, eigsh

        self.set_weights(alpha, beta)
        self.net.eval()
        dim = sum(p.numel() for p in self.net.parameters())
        hessian = LinearOperator((dim, dim), matvec=self._product, dtype=np.float64)
        max_eig = float(eigsh(hessian, k=1, which="LA", tol=self.tol, return_eigenvectors=False)[0])
        shifted = LinearOperator((dim, dim), matvec=lambda v: self._product(v) - max_eig * v, dtype=np.float64)
        min_eig = max_eig + float(eigsh(shifted, k=1, which="LM", tol=self.tol, return_eigenvectors=False)[0])
        return {"max_eig": max_eig, "min_eig": min_eig}


class NaiveLanguageModelLoop(ReferenceStyleEvaluator):
    """A language model's loss as a user would first write it: weights set on the host, then a
    DataLoader over dict batches and ``model(**batch, labels=...).loss`` with a host sync per batch.

    Every sequence has the same length and no padding, so weighting each
    batch's mean loss by its scored tokens gives the split's mean exactly.
    """

    def __call__(self, alpha: float, beta: float = 0.0) -> dict[str, float]:
        self.set_weights(alpha, beta)
        self.net.eval()
        total_loss, tokens = 0.0, 0
        with torch.no_grad():
            for batch in self.loader:
                batch = {k: v.to(self.device) for k, v in batch.items()}
                loss = self.net(**batch, labels=batch["input_ids"]).loss
                scored = batch["input_ids"][:, 1:].numel()
                total_loss += loss.item() * scored
                tokens += scored
        return {"train_loss": total_loss / tokens}
