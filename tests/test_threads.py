"""torch's thread count sized to the cores a process may use and to the work: one thread for the
demo MLP (many threads make it crawl on a busy machine), every core for a convolutional net."""

from __future__ import annotations

import os

import torch

import mpi_landscape_models as models
from mpi_landscape import threads
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
