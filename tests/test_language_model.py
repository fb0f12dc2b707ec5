"""A real transformer: a tiny Hugging Face GPT-2 (built from a config, no download) through the engine."""

import textwrap

import numpy as np
import pytest
import torch

from conftest import run_module
from mpi_landscape.directions import DirectionSpec, create_directions, model_tensors
from mpi_landscape.store import read_surface

TINY_GPT = textwrap.dedent('''
    """A two-layer GPT-2 over the characters of corpus.txt, in chunks of 16 tokens."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    LENGTH = 16

    def vocabulary():
        return sorted(set(open("corpus.txt", encoding="utf-8").read()))

    def build():
        torch.manual_seed(0)
        config = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=LENGTH, vocab_size=len(vocabulary()),
                            bos_token_id=0, eos_token_id=0)
        return GPT2LMHeadModel(config)

    def corpus():
        text = open("corpus.txt", encoding="utf-8").read()
        index = {c: i for i, c in enumerate(vocabulary())}
        ids = torch.tensor([index[c] for c in text])
        ids = ids[: len(ids) // LENGTH * LENGTH].view(-1, LENGTH)
        return {"train": {"input_ids": ids, "attention_mask": torch.ones_like(ids)}}
''')

TEXT = ("the landscape of a loss is a surface over weight space; a flat basin around the minimum "
        "generalizes, a sharp one does not. ") * 6


@pytest.fixture(scope="module")
def gpt_folder(tmp_path_factory, monkeypatch_module):
    folder = tmp_path_factory.mktemp("gpt")
    (folder / "tiny_gpt.py").write_text(TINY_GPT)
    (folder / "corpus.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch_module.chdir(folder)
    monkeypatch_module.syspath_prepend(str(folder))
    import tiny_gpt

    net = tiny_gpt.build().eval()
    torch.save(net.state_dict(), folder / "gpt.pt")
    ids = tiny_gpt.corpus()["train"]["input_ids"]
    with torch.no_grad():
        own_loss = net(input_ids=ids, labels=ids).loss.item()
    return folder, net, own_loss


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_surface_of_a_gpt2_centre_is_its_own_loss_and_ranks_agree(gpt_folder):
    folder, _, own_loss = gpt_folder
    surfaces = {}
    for ranks in (1, 2):
        out = folder / f"lm{ranks}.h5"
        proc = run_module("mpi_landscape.surface", "--model", "tiny_gpt:build", "--model_file", "gpt.pt",
                          "--dataset", "tiny_gpt:corpus", "--task", "language_model", "--x=-1:1:3",
                          "--y=-1:1:3", "--batch_size", "5", "--dir_file", str(folder / "lm_dirs.h5"),
                          "--surf_file", str(out), ranks=ranks, cwd=folder)
        assert proc.returncode == 0, proc.stderr
        surfaces[ranks] = read_surface(str(out))
    two = surfaces[2]
    assert two.done.all()
    assert set(two.metrics) >= {"train_loss", "train_acc", "train_perplexity", "train_nonfinite"}
    assert two.metrics["train_loss"][1, 1] == pytest.approx(own_loss, rel=1e-5)
    assert two.metrics["train_perplexity"][1, 1] == pytest.approx(np.exp(own_loss), rel=1e-5)
    for name, values in two.metrics.items():
        np.testing.assert_allclose(surfaces[1].metrics[name], values, rtol=1e-6, err_msg=name)
    assert sum(two.attrs["last_run"]["points_by_rank"].values()) == 9


def test_filter_normalization_of_a_transformer_is_per_dim0_slice(gpt_folder):
    """Embedding rows, Linear/attention projection dim-0 slices rescaled to θ's; LayerNorm and biases zero."""
    _, net, _ = gpt_folder
    x, _ = create_directions(net, DirectionSpec(seed=4))
    names, tensors = model_tensors(net, "weights")
    kinds = set()
    for name, theta, d in zip(names, tensors, x):
        if theta.dim() <= 1:
            assert torch.count_nonzero(d) == 0, name  # biasbn: biases and LayerNorm affine ignored
            continue
        kinds.add(name.rsplit(".", 2)[-2])
        ratio = d.flatten(1).norm(dim=1) / theta.detach().flatten(1).norm(dim=1)
        torch.testing.assert_close(ratio, torch.ones_like(ratio), msg=name)
    assert {"wte", "wpe", "c_attn", "c_proj", "c_fc"} <= kinds

