"""What a newcomer types at the command line: help texts, a space before a negative grid spec,
usage errors printed once per job, and messages that name our flags rather than a library's."""

from __future__ import annotations

import re

import pytest

from conftest import run_module
from mpi_landscape import cli_reference, demo, interpolate, surface, train
from mpi_landscape.data import load_splits
from mpi_landscape.errors import LandscapeError

PARSERS = (surface, interpolate, train, demo)


def test_cli_reference_help_prints_help_and_writes_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        cli_reference.main(["--help"])
    assert stopped.value.code == 0
    assert "usage: python -m mpi_landscape.cli_reference" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_cli_reference_writes_the_file_it_is_given(tmp_path):
    assert cli_reference.main([str(tmp_path / "cli.md")]) == 0
    assert (tmp_path / "cli.md").read_text(encoding="utf-8") == cli_reference.render()


@pytest.mark.parametrize("argv", [["--x", "-1:1:5", "--y", "-0.5:0.5:3"], ["--x=-1:1:5", "--y=-0.5:0.5:3"],
                                  ["--x", "-1:1:5", "--y=-0.5:0.5:3"]])
def test_grid_spec_after_a_space_is_a_value(argv):
    args = surface.build_parser().parse_args(["--model_file", "a.t7", *argv])
    assert (args.x, args.y) == ("-1:1:5", "-0.5:0.5:3")


def test_negative_numbers_after_a_space_are_values_and_flags_stay_flags():
    args = surface.build_parser().parse_args(["--model_file", "a.t7", "--x", "-.5:2:3", "--seed", "-3",
                                              "--same_dir", "--y", "0:1:2"])
    assert (args.x, args.seed, args.same_dir, args.y) == ("-.5:2:3", -3, True, "0:1:2")


@pytest.mark.parametrize("module", PARSERS, ids=lambda m: m.__name__)
def test_help_states_each_default_once(module):
    text = module.build_parser().format_help()
    flattened = re.sub(r"\s+", " ", text)
    assert "(default: None)" not in flattened
    assert not re.search(r"\(default[^)]*\) \(default", flattened), flattened


def test_model_file_is_shown_as_required_in_the_usage_line():
    usage = re.sub(r"\s+", " ", surface.build_parser().format_usage())
    assert " --model_file MODEL_FILE " in usage and "[--model_file MODEL_FILE]" not in usage


def test_missing_cifar10_names_our_flag_not_torchvisions_argument(tmp_path):
    with pytest.raises(LandscapeError) as raised:
        load_splits("cifar10", ["test"], datapath=str(tmp_path))
    message = str(raised.value)
    assert "--download" in message and "download=True" not in message


def test_usage_error_under_mpirun_is_printed_once(tmp_path):
    proc = run_module("mpi_landscape.surface", "--model_file", "a.t7", "--xnorm", "bogus", ranks=2,
                      cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--xnorm" in errors[0], proc.stderr
