"""Directions: each normalization against its definition, file layout both ways, refusals."""

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import mpi_landscape_models as models
from mpi_landscape.directions import (DirectionSpec, create_directions, default_dir_file,
                                      load_directions, model_tensors, normalize_direction,
                                      random_direction, save_directions, target_direction)
from mpi_landscape.errors import LandscapeError


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5))


def fresh(theta, seed=1):
    return random_direction(theta, torch.Generator().manual_seed(seed))


@pytest.fixture
def theta():
    return model_tensors(small_cnn(), "weights")[1]


def test_filter_norm_matches_each_filter_of_theta(theta):
    d = normalize_direction(fresh(theta), theta, "filter", "biasbn")
    for di, wi in zip(d, theta):
        if wi.dim() <= 1:
            assert torch.count_nonzero(di) == 0
            continue
        for k in range(wi.shape[0]):
            assert torch.isclose(di[k].norm(), wi[k].norm(), rtol=1e-5)


def test_filter_direction_keeps_the_gaussian_direction_of_each_filter(theta):
    raw = fresh(theta)
    d = normalize_direction([t.clone() for t in raw], theta, "filter")
    for r, di in zip(raw, d):
        if r.dim() > 1:
            cos = torch.nn.functional.cosine_similarity(r[0].flatten(), di[0].flatten(), dim=0)
            assert cos > 0.9999


def test_layer_norm_matches_whole_tensor(theta):
    d = normalize_direction(fresh(theta), theta, "layer")
    for di, wi in zip(d, theta):
        if wi.dim() > 1:
            assert torch.isclose(di.norm(), wi.norm(), rtol=1e-5)


def test_weight_norm_is_elementwise_product(theta):
    raw = fresh(theta)
    d = normalize_direction([t.clone() for t in raw], theta, "weight")
    for r, di, wi in zip(raw, d, theta):
        if wi.dim() > 1:
            assert torch.allclose(di, r * wi)


def test_dfilter_and_dlayer_are_unit_norm(theta):
    d = normalize_direction(fresh(theta), theta, "dfilter")
    for di in d:
        if di.dim() > 1:
            assert torch.allclose(di.reshape(di.shape[0], -1).norm(dim=1), torch.ones(di.shape[0]), atol=1e-5)
    d = normalize_direction(fresh(theta), theta, "dlayer")
    for di in d:
        if di.dim() > 1:
            assert torch.isclose(di.norm(), torch.tensor(1.0), atol=1e-5)


def test_without_biasbn_small_tensors_copy_theta(theta):
    d = normalize_direction(fresh(theta), theta, "filter", "none")
    for di, wi in zip(d, theta):
        if wi.dim() <= 1:
            assert torch.equal(di, wi)


def test_none_norm_leaves_large_tensors_alone(theta):
    raw = fresh(theta)
    d = normalize_direction([t.clone() for t in raw], theta, "none")
    assert all(torch.equal(a, b) for a, b in zip(raw, d) if a.dim() > 1)


def test_unknown_norm_is_refused(theta):
    with pytest.raises(LandscapeError, match="normalization"):
        normalize_direction(fresh(theta), theta, "bogus")


def test_states_cover_bn_running_statistics():
    net = small_cnn()
    names, tensors = model_tensors(net, "states")
    assert "1.running_mean" in names and "1.num_batches_tracked" in names
    assert len(tensors) > len(list(net.parameters()))


def test_same_seed_same_directions_and_y_differs_from_x():
    net = small_cnn()
    x1, y1 = create_directions(net, DirectionSpec(seed=7))
    x2, y2 = create_directions(net, DirectionSpec(seed=7))
    assert all(torch.equal(a, b) for a, b in zip(x1 + y1, x2 + y2))
    assert not torch.equal(x1[0], y1[0])
    x3, y3 = create_directions(net, DirectionSpec(seed=7, same_dir=True))
    assert all(torch.equal(a, b) for a, b in zip(x3, y3))


def test_target_direction_is_difference_of_models():
    a, b = small_cnn(), small_cnn()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.5)
    x, y = create_directions(a, DirectionSpec(two_d=False), net2=b)
    assert y is None
    for d in x:
        assert torch.allclose(d, torch.full_like(d, 1.5))
    ta, tb = model_tensors(a, "states")[1], model_tensors(b, "states")[1]
    assert all(torch.allclose(d, q.float() - p.float()) for d, p, q in zip(target_direction(ta, tb), ta, tb))


def test_written_file_has_reference_layout_and_reads_like_the_reference(tmp_path):
    net = small_cnn()
    spec = DirectionSpec()
    x, y = create_directions(net, spec)
    path = str(tmp_path / "dirs.h5")
    save_directions(path, net, spec, x, y)
    with h5py.File(path, "r") as f:  # the reference's read_list
        for group, expected in (("xdirection", x), ("ydirection", y)):
            loaded = [f[group][str(i)][()] for i in range(len(f[group]))]
            assert len(loaded) == len(expected)
            for arr, t in zip(loaded, expected):
                assert arr.dtype == np.float32 and arr.shape == tuple(t.shape)
                np.testing.assert_array_equal(arr, t.numpy())
        assert f.attrs["dir_type"] == "weights"


def test_reference_written_file_loads(tmp_path):
    net = small_cnn()
    theta = model_tensors(net, "weights")[1]
    path = str(tmp_path / "ref.h5")
    with h5py.File(path, "w") as f:  # as the reference's write_list does: no attributes
        for group, seed in (("xdirection", 1), ("ydirection", 2)):
            g = f.create_group(group)
            for i, t in enumerate(fresh(theta, seed)):
                g.create_dataset(str(i), data=t.numpy())
    x, y = load_directions(path, net, "weights", two_d=True)
    assert all(torch.equal(a, b) for a, b in zip(x, fresh(theta, 1)))
    assert all(torch.equal(a, b) for a, b in zip(y, fresh(theta, 2)))


def test_direction_file_of_another_model_is_refused(tmp_path):
    other = models.build_model("demo_mlp")
    spec = DirectionSpec()
    path = str(tmp_path / "other.h5")
    save_directions(path, other, spec, *create_directions(other, spec))
    with pytest.raises(LandscapeError, match="another model"):
        load_directions(path, small_cnn(), "weights", two_d=True)
    with pytest.raises(LandscapeError, match="--dir_type"):
        load_directions(path, other, "states", two_d=True)


def test_1d_file_refused_for_2d_request(tmp_path):
    net = small_cnn()
    spec = DirectionSpec(two_d=False)
    path = str(tmp_path / "line.h5")
    save_directions(path, net, spec, *create_directions(net, spec))
    with pytest.raises(LandscapeError, match="no ydirection"):
        load_directions(path, net, "weights", two_d=True)


def test_default_dir_file_follows_reference_naming():
    spec = DirectionSpec()
    assert default_dir_file("cifar10/trained_nets/m/model_300.t7", spec) == (
        "cifar10/trained_nets/m/model_300.t7_weights_xignore=biasbn_xnorm=filter"
        "_yignore=biasbn_ynorm=filter.h5")
    line = DirectionSpec(dir_type="states", two_d=False)
    assert default_dir_file("a/m1.t7", line, "a/m2.t7") == "a/m1.t7_m2.t7_states_xignore=biasbn_xnorm=filter.h5"
    assert default_dir_file("a/m1.t7", line, "b/m2.t7") == "a/m1.t7_b_m2.t7_states_xignore=biasbn_xnorm=filter.h5"
