"""A user's own code (``--model``, ``--dataset``, ``--task`` as ``package.module:factory``) that
fails or breaks the Task contract is one ``error:`` line naming the module, the exception and the
user's file:line, exit 2, with no surface file written; a bug of ours keeps its traceback."""

from __future__ import annotations

import pickle
import sys
import textwrap

import pytest
import torch
from torch import nn

from conftest import run_module
from mpi_landscape import surface
from mpi_landscape.directions import DirectionSpec, create_directions
from mpi_landscape.errors import LandscapeError
from mpi_landscape.evaluate import PointEvaluator, SplitData

TASKS = {
    # sums of 3 and 5 values whatever the batch: the surface would be the mean of 3 samples
    "short_sums": """
        from mpi_landscape.task import Classification

        class Short(Classification):
            def sums(self, outputs, inputs, targets):
                parts = super().sums(outputs, inputs, targets)
                return {"loss": parts["loss"][:3], "acc": parts["acc"][:5], "nonfinite": parts["nonfinite"][:5]}

        def build():
            return Short()
    """,
    "missing_metric": """
        from mpi_landscape.task import Task, per_sample_loss

        class Missing(Task):
            name = "missing"
            metrics = ("margin",)

            def sums(self, outputs, inputs, targets):
                return {"loss": per_sample_loss(outputs, targets, "crossentropy").double()}

        def build():
            return Missing()
    """,
    "undeclared_metric": """
        from mpi_landscape.task import Task, per_sample_loss

        class Undeclared(Task):
            name = "undeclared"

            def sums(self, outputs, inputs, targets):
                loss = per_sample_loss(outputs, targets, "crossentropy").double()
                return {"loss": loss, "margin": loss}

        def build():
            return Undeclared()
    """,
    "complex_sums": """
        import torch
        from mpi_landscape.task import Classification

        class Complex(Classification):
            def sums(self, outputs, inputs, targets):
                return {**super().sums(outputs, inputs, targets), "acc": outputs[:, 0].to(torch.complex64)}

        def build():
            return Complex()
    """,
    "list_sums": """
        from mpi_landscape.task import Classification

        class Listed(Classification):
            def sums(self, outputs, inputs, targets):
                return {**super().sums(outputs, inputs, targets), "acc": [1.0] * len(targets)}

        def build():
            return Listed()
    """,
    "raising_sums": """
        from mpi_landscape.task import Classification

        class Broken(Classification):
            def sums(self, outputs, inputs, targets):
                return {"loss": outputs[:, 99]}

        def build():
            return Broken()
    """,
    "raising_finish": """
        from mpi_landscape.task import Classification

        class Broken(Classification):
            def finish(self, totals, samples):
                return {"loss": totals["loss"] / samples, "acc": totals["accuracy"]}

        def build():
            return Broken()
    """,
    "import_error": """
        x = 1 / 0

        def build():
            pass
    """,
    "syntax_error": """
        def build(:
            pass
    """,
    "not_a_task": """
        def build():
            return 42
    """,
    "bad_metric_names": """
        from mpi_landscape.task import Classification

        class Slashed(Classification):
            metrics = ("acc", "nonfinite", "top/5")

        def build():
            return Slashed()
    """,
}

# (case, flag, attribute, what the one error line says)
FAILURES = [
    ("short_sums", "--task", "build",
     "'loss' has shape (3,) for a batch of 8 samples: one value per sample is needed"),
    ("missing_metric", "--task", "build", "its sums give no 'margin'"),
    ("undeclared_metric", "--task", "build", "'margin', which is not in its metrics"),
    ("complex_sums", "--task", "build", "'acc' is a torch.complex64 tensor"),
    ("list_sums", "--task", "build", "'acc' is a list, not a tensor"),
    ("raising_sums", "--task", "build", "IndexError: index 99 is out of bounds"),
    ("raising_finish", "--task", "build", "KeyError: 'accuracy' (at raising_finish.py:5)"),
    ("import_error", "--task", "build",
     "importing 'import_error' failed: ZeroDivisionError: division by zero (at import_error.py:1)"),
    ("syntax_error", "--task", "build", "SyntaxError: invalid syntax"),
    ("not_a_task", "--task", "build", "must return a mpi_landscape.task.Task, got int"),
    ("bad_metric_names", "--task", "build", "'top/5'"),
    ("import_error", "--dataset", "build",
     "importing 'import_error' failed: ZeroDivisionError: division by zero (at import_error.py:1)"),
    ("syntax_error", "--dataset", "build", "SyntaxError: invalid syntax (at syntax_error.py:1)"),
    ("import_error", "--model", "build", "ZeroDivisionError: division by zero (at import_error.py:1)"),
    ("syntax_error", "--model", "build", "SyntaxError: invalid syntax"),
]

DATASETS = {
    "broken_items": """
        class Broken:
            def __len__(self):
                return 10

            def __getitem__(self, i):
                raise ValueError(f"item {i} is not on this disk")

        def build():
            return Broken()
    """,
    "factory_raises": """
        import torch

        def build():
            return torch.load("nowhere.pt", weights_only=True)
    """,
}


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """Every module above written into a fresh working directory, none of them imported yet."""
    for name, source in {**TASKS, **DATASETS}.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source).lstrip("\n"))
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def surface_error(argv: list[str], capsys) -> str:
    """The one line the surface command prints for ``argv``; it must exit with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        surface.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def demo_command(checkpoint: str, folder, *extra: str) -> list[str]:
    return ["--model", "demo_mlp", "--model_file", checkpoint, "--dataset", "demo", "--x=-1:1:3",
            "--task", "classification", "--dir_file", str(folder / "d.h5"), "--surf_file", str(folder / "s.h5"),
            *extra]


@pytest.mark.parametrize("case, flag, attr, message", FAILURES, ids=[f"{f[1]}-{f[0]}" for f in FAILURES])
def test_a_failing_user_module_is_one_error_line(user_modules, demo_checkpoint, capsys, case, flag, attr,
                                                 message):
    argv = demo_command(demo_checkpoint, user_modules)
    argv[argv.index(flag) + 1] = f"{case}:{attr}"
    line = surface_error(argv, capsys)
    assert f"{flag} {case}:{attr}" in line or f"'{case}:{attr}'" in line, line
    assert message in line, line
    assert not (user_modules / "s.h5").exists()


@pytest.mark.parametrize("case, message", [
    ("broken_items", "ValueError: item 0 is not on this disk (at broken_items.py:6)"),
    ("factory_raises", "FileNotFoundError: [Errno 2] No such file or directory: 'nowhere.pt' (at factory_raises.py:4)"),
])
def test_a_failing_dataset_is_one_error_line(user_modules, demo_checkpoint, capsys, case, message):
    argv = demo_command(demo_checkpoint, user_modules)
    argv[argv.index("--dataset") + 1] = f"{case}:build"
    line = surface_error(argv, capsys)
    assert f"--dataset {case}:build" in line and message in line, line


def small_evaluator(task):
    torch.manual_seed(0)
    net = nn.Linear(2, 3)
    x, _ = create_directions(net, DirectionSpec(seed=1))
    data = SplitData(torch.randn(40, 2), torch.randint(0, 3, (40,)))
    return PointEvaluator(net, "weights", x, None, {"train": data}, task=task)


def test_the_first_batch_checks_a_task_given_as_an_object():
    from mpi_landscape.task import Classification

    class Short(Classification):
        def sums(self, outputs, inputs, targets):
            return {key: value[:3] for key, value in super().sums(outputs, inputs, targets).items()}

    with pytest.raises(LandscapeError, match=r"'loss' has shape \(3,\) for a batch of 8 samples"):
        small_evaluator(Short())


def test_a_bug_of_ours_keeps_its_traceback(monkeypatch):
    """A user task that inherits our sums: a failure inside our code is not blamed on the user."""
    from mpi_landscape import task as task_module

    class Inherits(task_module.Classification):
        metrics = ("acc", "nonfinite")

    def broken(*args):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(task_module, "per_sample_loss", broken)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        small_evaluator(Inherits())
    with pytest.raises(RuntimeError, match="a bug of ours"):
        small_evaluator("classification")


@pytest.mark.parametrize("flag, spec, message", [
    ("--task", "short_sums:build", "'loss' has shape (3,) for a batch of 8 samples"),
    ("--task", "import_error:build", "ZeroDivisionError: division by zero (at import_error.py:1)"),
    ("--dataset", "broken_items:build", "ValueError: item 0 is not on this disk (at broken_items.py:6)"),
])
def test_under_mpirun_a_failing_user_module_is_one_line_and_no_surface(user_modules, demo_checkpoint, flag,
                                                                       spec, message):
    argv = demo_command(demo_checkpoint, user_modules)
    argv[argv.index(flag) + 1] = spec
    proc = run_module("mpi_landscape.surface", *argv, ranks=2, cwd=user_modules)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag} {spec}") and message in lines[0], proc.stderr
    left = sorted(p.name for p in user_modules.iterdir() if p.name.startswith("s.h5"))
    assert left == [], left


def test_a_raw_pickle_checkpoint_is_our_one_line(tmp_path):
    """A checkpoint written with pickle, not torch.save: torch's own warning is not shown."""
    with open(tmp_path / "raw.t7", "wb") as handle:
        pickle.dump({"state_dict": {"weight": [1.0, 2.0]}}, handle)
    proc = run_module("mpi_landscape.surface", "--model", "demo_mlp", "--model_file", "raw.t7", "--dataset", "demo",
                      "--x=-1:1:3", "--surf_file", "s.h5", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: checkpoint raw.t7"), proc.stderr


def test_a_finish_that_needs_the_whole_split_is_not_refused_on_the_first_batch():
    """A ratio of two totals may be 0/0 on 8 samples: only a mistake in finish's code is refused early."""
    from mpi_landscape.task import Classification, UserTask, check_first_batch

    class Rate(Classification):
        metrics = ("acc", "nonfinite", "rate")

        def sums(self, outputs, inputs, targets):
            return {**super().sums(outputs, inputs, targets), "hits": targets == 2}

        def finish(self, totals, samples):
            return {**super().finish(totals, samples), "rate": totals["hits"] / totals["hits"]}

    outputs, targets = torch.randn(8, 3), torch.zeros(8, dtype=torch.long)
    check_first_batch(UserTask(Rate(), "--task rate:build"), outputs, None, targets)  # 0/0 here, not refused
    Rate.finish = lambda self, totals, samples: {**Classification.finish(self, totals, samples), "rate": totals["hit"]}
    with pytest.raises(LandscapeError, match="its finish failed: KeyError: 'hit'"):
        check_first_batch(UserTask(Rate(), "--task rate:build"), outputs, None, targets)
