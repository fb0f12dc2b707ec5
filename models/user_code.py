"""A user's own code, named ``package.module:factory``: imported and called with every failure told
in one line.

A network, a dataset or a task of the user's own is a callable in a module the
user wrote. Whatever goes wrong in it -- a module that is not found, a syntax
error, an exception raised while the module is imported or while the factory
runs -- is a ``ModelError`` whose message names the spec, the exception (type
and message) and the line of the user's file where it was raised. An exception
raised inside this package, or the machine running out of memory, is not the
user's doing and passes unchanged, with its traceback.
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from types import FrameType, ModuleType
from typing import Iterator

import torch

from .errors import ModelError

_SHOWN_CALLABLES = 10
# Code that is never the user's: this package and the one that runs it, by module name; and, for the
# line shown, the standard library and installed packages (torch, ...): the user's line is the deepest other.
_OURS = (__name__.partition(".")[0], "mpi_landscape")
_LIBRARIES = tuple({os.path.realpath(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "purelib", "platlib")})
_NOT_THE_USERS = (MemoryError, torch.OutOfMemoryError)


def import_factory(spec: str, what: str) -> Callable:
    """The callable named by ``spec`` (``package.module:name``; the working directory is importable).

    ``what`` names the spec in messages, e.g. ``"--task mypkg.mytask:build"``.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ModelError(f"{what} is not of the form package.module:factory")
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        raise ModelError(
            f"{what} names a file; give the module's import name instead "
            f"(e.g. mypkg.mynet:build for mypkg/mynet.py, run from the directory that holds mypkg)"
        )
    module = _import_module(module_name, what)
    if not hasattr(module, attr):
        defined = sorted(
            name
            for name, value in vars(module).items()
            if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
        )
        shown = ", ".join(defined[:_SHOWN_CALLABLES])
        if len(defined) > _SHOWN_CALLABLES:
            shown += f", ... ({len(defined) - _SHOWN_CALLABLES} more)"
        listing = f"callables defined there: {shown}" if defined else "it defines no public callables"
        raise ModelError(f"{what}: cannot import it: module '{module_name}' has no '{attr}'; {listing}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise ModelError(f"{what}: '{attr}' is not callable (a {type(factory).__name__}, not a callable factory)")
    return factory


def _import_module(module_name: str, what: str) -> ModuleType:
    """Import a user's module with the current directory importable; its failures become ModelError."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ModelError(
                f"{what}: cannot import module '{exc.name}'; run from the directory that holds it or add "
                f"that directory to PYTHONPATH"
            ) from exc
        raise ModelError(f"{what}: importing '{module_name}' failed: {describe(exc)}") from exc
    except Exception as exc:
        if not raised_by_user(exc):
            raise
        raise ModelError(f"{what}: importing '{module_name}' failed: {describe(exc)}") from exc


@contextmanager
def user_code(what: str, doing: str = "the factory failed") -> Iterator[None]:
    """Inside, an exception the user's code raises becomes a ModelError ``"{what}: {doing}: ..."``."""
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:
        if not raised_by_user(exc):
            raise
        raise ModelError(f"{what}: {doing}: {describe(exc)}") from exc


def raised_by_user(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by the user's code (or by a library it called), not by ours.

    ``exc`` is caught where our code called the user's: the innermost of the
    frames below that call tells. Raised in this package or in mpi_landscape,
    it is ours (a bug, or a user error already told as one), as is running out
    of memory, which callers handle (a smaller batch). With no frame below the
    call, the callable itself raised it (a builtin called with wrong arguments).
    """
    if isinstance(exc, _NOT_THE_USERS):
        return False
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    below = list(itertools.dropwhile(_is_ours, frames))  # what our calling frames called
    return not below or not _is_ours(below[-1])


def describe(exc: BaseException) -> str:
    """``Type: message (at file:line)``, the line being the deepest one of the user's own code."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{type(exc).__name__}: {exc.msg} (at {_shown(exc.filename)}:{exc.lineno})"
    frames = [(frame.f_code.co_filename, line) for frame, line in traceback.walk_tb(exc.__traceback__)
              if not _is_ours(frame)]
    users = [(file, line) for file, line in frames if not _is_library(file)] or frames
    where = f" (at {_shown(users[-1][0])}:{users[-1][1]})" if users else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _is_ours(frame: FrameType) -> bool:
    package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
    return package in _OURS


def _is_library(filename: str) -> bool:
    return filename.startswith("<") or os.path.realpath(filename).startswith(_LIBRARIES)


def _shown(filename: str) -> str:
    """A file's path relative to the working directory when it lies below it, else as it is."""
    relative = os.path.relpath(filename)
    return filename if relative.startswith(os.pardir) else relative
