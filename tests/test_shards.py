"""Data for groups of ranks, without MPI: shards that add up to the split, uint8 images normalized per
batch, streamed chunks, and the layout of groups -- each giving the losses of the plain float path."""

from __future__ import annotations

import pytest
import torch

from cifar_folder import write_cifar10
from mpi_landscape.data import Selection, load_splits, shard_sizes
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.distributed import GroupLayout
from mpi_landscape.errors import LandscapeError
from mpi_landscape.evaluate import PointEvaluator


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar10(str(tmp_path_factory.mktemp("cifar")), per_batch=40, test_size=30)


def small_conv() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()


def evaluator(splits, **options) -> PointEvaluator:
    net = small_conv()
    x, y = create_directions(net, DirectionSpec(seed=3, two_d=True))
    return PointEvaluator(net, "weights", x, y, splits, batch_size=16, **options)


POINTS = [(0.0, 0.0), (0.4, -0.3), (-1.0, 1.0)]


def test_uint8_images_give_the_losses_of_the_float_path_at_a_quarter_of_the_memory(cifar_root):
    as_float = evaluator(load_splits("cifar10", ["train", "test"], cifar_root))
    as_uint8 = evaluator(load_splits("cifar10", ["train", "test"], cifar_root, uint8=True))
    assert as_uint8.data.inputs.dtype == torch.uint8
    assert as_uint8.data.inputs.nbytes * 4 == as_float.data.inputs.nbytes
    for point in POINTS:
        got, expected = as_uint8(*point), as_float(*point)
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-12), name


def test_streamed_chunks_give_the_losses_of_the_resident_data(cifar_root):
    splits = load_splits("cifar10", ["train", "test"], cifar_root, uint8=True)
    resident, streamed = evaluator(splits), evaluator(splits, stream=True)
    assert resident.data.resident and resident.data.chunks(16) == 1
    assert not streamed.data.resident and streamed.data.chunks(16) == 5  # 230 samples, 3 batches a chunk
    for point in POINTS:
        assert streamed(*point) == resident(*point)  # the same batches: chunks hold whole batches


def test_shards_add_up_to_the_split_and_their_sums_to_its_metrics(cifar_root):
    whole = load_splits("cifar10", ["train", "test"], cifar_root, uint8=True, data_split=2, seed=5)
    shards = [load_splits("cifar10", ["train", "test"], cifar_root, uint8=True, data_split=2, seed=5,
                          shard=i, shards=3) for i in range(3)]
    for split in ("train", "test"):
        assert torch.equal(torch.cat([s[split].inputs for s in shards]), whole[split].inputs)
        assert [len(s[split]) for s in shards] == shard_sizes(len(whole[split]), 3)
        assert all(s[split].full_size == len(whole[split]) for s in shards)
    point = (0.3, 0.2)
    sums = [evaluator(s).sums(*point) for s in shards]
    added = {k: sum(s[k] for s in sums) for k in sums[0]}
    whole_evaluator = evaluator(whole)
    expected = whole_evaluator(*point)
    for name, value in whole_evaluator.finish(added).items():
        assert value == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name


def test_a_selection_keeps_ascending_disjoint_shards():
    chosen = Selection(data_split=3, seed=1).chosen(100)
    parts = [Selection(3, 1, i, 4).indices(100) for i in range(4)]
    assert list(torch.cat([torch.from_numpy(p) for p in parts]).numpy()) == list(chosen)
    assert list(chosen) == sorted(chosen) and len(chosen) == 33


def test_group_layouts_and_the_ones_refused():
    assert GroupLayout(8, 2).leaders == [0, 2, 4, 6]
    assert [GroupLayout(8, 4).shard_of(r) for r in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    alone = GroupLayout(5, 2, coordinator_only=True)
    assert alone.leaders == [1, 3] and alone.group_of(0) is None and alone.group_of(4) == 1
    for size, k, only in ((4, 3, False), (4, 2, True), (4, 0, False)):
        with pytest.raises(LandscapeError, match="--ranks_per_point"):
            GroupLayout(size, k, only)


def test_too_few_samples_for_the_shards_is_refused(cifar_root):
    with pytest.raises(LandscapeError, match="fewer samples than --ranks_per_point"):
        load_splits("demo", ["train"], data_split=1000, shard=0, shards=8)

