"""What every entry point shares: flags with the reference's names and dashed aliases,
a frozen config built from them, and user errors printed as one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from contextlib import contextmanager
from typing import Iterator, TypeVar

from . import __version__
from .errors import LandscapeError

Config = TypeVar("Config")


# A value that starts with a minus but is a number or a grid spec ("-1", "-0.5:1.5:401"), never a flag.
NEGATIVE_VALUE = re.compile(r"^-\.?\d[\d.eE+-]*(:[-\d.eE+]*)*$")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults appended to each flag's help, unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default is None:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one ``error:`` line printed once per job (exit 2),
    not once per MPI rank, and which reads ``--x -1:1:51`` (a space before a negative value)
    as ``--x=-1:1:51``."""

    def error(self, message: str):
        from .distributed import launch_rank

        if launch_rank() == 0:
            print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def parse_args(self, args=None, namespace=None):
        return super().parse_args(self.join_negative_values(sys.argv[1:] if args is None else args),
                                  namespace)

    def join_negative_values(self, argv: list[str]) -> list[str]:
        """``[flag, value]`` as ``flag=value`` where ``flag`` takes one value and ``value`` looks
        like a negative number or grid spec, which argparse would otherwise take for a flag."""
        takes_value = {name for action in self._actions if action.nargs is None and action.option_strings
                       for name in action.option_strings}
        joined: list[str] = []
        values = iter(argv)
        for token in values:
            if token in takes_value:
                value = next(values, None)
                if value is not None and NEGATIVE_VALUE.match(value):
                    joined.append(f"{token}={value}")
                    continue
                joined.append(token)
                if value is not None:
                    joined.append(value)
                continue
            joined.append(token)
        return joined


def new_parser(module: str, config_type: type, description: str) -> argparse.ArgumentParser:
    """A parser whose defaults are the config dataclass's, shown in ``--help``, with ``--version``."""
    parser = Parser(prog=f"python -m {module}", description=description, formatter_class=HelpFormatter)
    parser.set_defaults(**{f.name: f.default for f in dataclasses.fields(config_type)})
    parser.add_argument("--version", action="version", version=f"mpi_landscape {__version__}")
    return parser


def add_flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
    """Add ``--some_flag`` together with its alias ``--some-flag``."""
    names = [name]
    if "_" in name:
        names.append(name.replace("_", "-"))
    parser.add_argument(*names, **kwargs)


def parse_config(parser: argparse.ArgumentParser, config_type: type[Config],
                 argv: list[str]) -> Config:
    """Parse ``argv`` into ``config_type``; flags that are not config fields are accepted and dropped."""
    return config_from(config_type, vars(parser.parse_args(argv)))


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str, ...]:
    """The destinations ``argv`` sets itself, as opposed to those left at their defaults.

    argparse fills in a default only where the namespace has no value yet:
    starting from a namespace where every destination holds a marker, the
    markers that remain are the flags not given.
    """
    unset = object()
    names = {a.dest for a in parser._actions} | set(parser._defaults)
    parsed = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(names, unset)))
    return tuple(sorted(name for name, value in vars(parsed).items() if value is not unset))


def config_from(config_type: type[Config], values: dict) -> Config:
    """``config_type`` built from the entries of ``values`` that are its fields; the rest is dropped."""
    fields = {f.name for f in dataclasses.fields(config_type)}
    return config_type(**{k: v for k, v in values.items() if k in fields})


def config_from_files(parser: argparse.ArgumentParser, config_type: type[Config], argv: list[str],
                      file_keys: tuple[str, ...] = ("surf_files",)) -> Config:
    """Parse ``argv`` into ``config_type`` for a command that reads files: the files given under
    ``file_keys`` (positional arguments, ``--surf_file``) become ``surf_files``; none is a usage error."""
    namespace = vars(parser.parse_args(argv))
    files = tuple(f for key in file_keys for f in (namespace.pop(key, None) or ()))
    if not files:
        parser.error("give at least one surface file")
    return config_from(config_type, {**namespace, "surf_files": files})


def file_labels(labels: str | None, files: tuple[str, ...]) -> list[str] | None:
    """``--labels A,B,...``: one label per file, in order (None when not given)."""
    if labels is None:
        return None
    found = [label.strip() for label in labels.split(",")]
    if len(found) != len(files):
        raise LandscapeError(f"--labels gives {len(found)} labels for {len(files)} files: "
                             "give one per file, separated by commas")
    return found


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a LandscapeError as one line on rank 0 and exit with status 2.

    A failure every rank of a job raised alike (``JobFailed``) is printed on
    rank 0 too, as it is, and exits with its own status.
    """
    from .distributed import JobFailed, finalize_together, launch_rank, world_rank

    try:
        yield
    except JobFailed as failure:
        if world_rank() == 0:
            print(failure.text.rstrip("\n"), file=sys.stderr)
        finalize_together()  # every rank is here: none is killed for exiting first
        sys.exit(failure.code)
    except LandscapeError as exc:
        if launch_rank() == 0 and world_rank() == 0:
            print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
