"""The ``offerwise`` command line.

Each module of this package contributes click commands; top-level commands found in a module
(those that are not subcommands of a group of the same module) are registered here, so a new
area adds its module without touching this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

from app.cli.output import fail
from store.embedded import EmbeddedRedisError
from store.redis_client import StoreConfigError


def _module_commands(module: object) -> list[click.Command]:
    found = [v for v in vars(module).values() if isinstance(v, click.Command)]
    nested = {
        id(sub) for cmd in found if isinstance(cmd, click.Group) for sub in cmd.commands.values()
    }
    return [cmd for cmd in found if id(cmd) not in nested]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="offerwise")
def cli() -> None:
    """Offerwise: hosted web personalization."""


def _register() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in _module_commands(module):
            if command.name not in cli.commands:
                cli.add_command(command)


_register()


def main() -> None:
    try:
        cli(prog_name="offerwise")
    except (EmbeddedRedisError, StoreConfigError) as err:  # the store: say why not, and the fix
        fail(str(err))
