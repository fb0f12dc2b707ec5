"""torch's thread count sized to the cores a process may use and to the work: one thread for the
demo MLP (many threads make it crawl on a busy machine), every core for a convolutional net."""

from __future__ import annotations

import os

import torch

import mpi_landscape_models as models
from mpi_landscape import threads
from mpi_landscape.data import demo_split
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.evaluate import PointEvaluator, SplitData
from mpi_landscape.train import TrainConfig, train


def test_thread_count_grows_with_the_work_and_stops_at_the_cores():
    assert threads.threads_for(1e6, cores=8) == 1
    assert threads.threads_for(3 * threads.FLOPS_PER_THREAD, cores=8) == 3
    assert threads.threads_for(1e12, cores=8) == 8
    assert threads.cores_per_process(processes_on_node=10 ** 6) == 1
    assert threads.cores_per_process() == threads.usable_cores() <= os.cpu_count()


def test_small_net_gets_one_thread_and_a_resnet_every_core(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    mlp = models.build_model("demo_mlp")
    assert threads.choose_threads(mlp, torch.zeros(2, 2), batch_size=128) == 1
    resnet = models.build_model("resnet20").train()
    assert threads.choose_threads(resnet, torch.zeros(2, 3, 32, 32), batch_size=128) == 4
    assert resnet.training  # the probe's eval() is undone
    assert threads.choose_threads(resnet, torch.zeros(2, 3, 32, 32), batch_size=128, processes_on_node=2) == 2


def test_omp_num_threads_is_the_users_choice(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads(models.build_model("demo_mlp"), torch.zeros(2, 2), 128) == torch.get_num_threads()


def test_cpu_batch_is_the_whole_split_or_the_fewest_equal_batches_within_the_budget():
    budget = threads.CPU_BATCH_ACTIVATION_BYTES
    assert threads.cpu_batch_size(3000, 256) == 3000  # the demo MLP: one batch
    assert threads.cpu_batch_size(10_000, 3136) == 10_000  # a 784-input MLP: one batch
    assert threads.cpu_batch_size(20_000, 3136) == 10_000  # two of 10,000, not 10,699 + 9,301
    assert threads.cpu_batch_size(10_001, budget // 2500) == 2001  # 2,500 fit a batch: five of 2,001
    assert threads.cpu_batch_size(50_000, 10**9) == threads.MIN_CPU_BATCH  # a huge activation: the floor


def cpu_evaluator(net, inputs, targets) -> PointEvaluator:
    x, y = create_directions(net, DirectionSpec())
    return PointEvaluator(net, "weights", x, y, {"train": SplitData(inputs, targets)})


def test_cpu_batch_follows_the_largest_activation_not_the_inputs():
    """784-512-512-10 on 10,000 samples: 3 kB of inputs a sample gave batches of 512 (1.5 MB), 20 a point;
    the measured rule takes the whole split (31 MB). A ResNet's first activations (16 channels at
    32x32, 64 kB a sample) are 21x its inputs: its batch follows them."""
    torch.manual_seed(0)
    wide = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                               torch.nn.ReLU(), torch.nn.Linear(512, 10))
    assert cpu_evaluator(wide, torch.randn(10_000, 784), torch.randint(0, 10, (10_000,))).batch_size == 10_000
    resnet = models.build_model("resnet20")
    images = cpu_evaluator(resnet, torch.randn(600, 3, 32, 32), torch.randint(0, 10, (600,)))
    assert images.batch_size == 300  # 32 MB / 64 kB = 512 a batch at most: two of 300
    demo = demo_split("train")
    assert cpu_evaluator(models.build_model("demo_mlp"), demo.inputs, demo.targets).batch_size == len(demo)


RECORDER = '''\
import torch
import mpi_landscape_models as models

SEEN = []


class Recording(models.build_model("demo_mlp").__class__):
    def forward(self, x):
        SEEN.append(torch.get_num_threads())
        return super().forward(x)


def build():
    return Recording(*models.build_model("demo_mlp"))
'''


def test_train_runs_a_small_net_on_one_thread_and_restores_the_count(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recorder.py").write_text(RECORDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = torch.get_num_threads()
    train(TrainConfig(model="recorder:build", dataset="demo", optimizer="adam", lr=0.01, epochs=1,
                      save_epoch=1, save_dir=str(tmp_path / "run"), lr_milestones="1"))
    import recorder

    assert recorder.SEEN and set(recorder.SEEN[1:]) == {1}
    assert torch.get_num_threads() == before
