"""The ``parkwatch`` command line.

Stage commands (``flows``, later ``events``, ``detect``, ``replay`` …) are contributed by the
stages through the ``parkwatch.commands`` entry-point group, so this shared package never imports
a stage. Every :class:`~parkwatch.errors.ParkWatchError` becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points

import click

from parkwatch import __version__
from parkwatch.errors import ParkWatchError

GROUP = "parkwatch.commands"


class _Group(click.Group):
    """Commands from entry points, imported only when that command runs (a slow or broken
    stage never slows down or breaks the others).

    A command is looked up in parkwatch's own distribution first (reading one
    ``entry_points.txt``); only a name it does not define costs a scan of every installed
    distribution, done once per process. So a plugin cannot shadow a built-in command.
    """

    _all: dict[str, EntryPoint] | None = None

    def _eps(self) -> dict[str, EntryPoint]:
        if self._all is None:
            self._all = {ep.name: ep for ep in entry_points(group=GROUP)}
        return self._all

    def _own(self, name: str) -> EntryPoint | None:
        try:
            eps = distribution("parkwatch").entry_points.select(group=GROUP, name=name)
        except PackageNotFoundError:  # running from a source tree that is not installed
            return None
        return next(iter(eps), None)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._eps()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None:
            ep = self._own(cmd_name) or self._eps().get(cmd_name)
            if ep is not None:
                cmd = ep.load()
                self.add_command(cmd, cmd_name)
        return cmd


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parkwatch")
def cli() -> None:
    """ParkWatch: security situational awareness for industrial internet parks."""


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the CLI, turning ParkWatch errors into one-line messages."""
    try:
        cli.main(args=argv, prog_name="parkwatch", standalone_mode=False)
    except ParkWatchError as exc:
        click.echo(f"parkwatch: error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("parkwatch: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
