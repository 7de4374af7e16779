"""The click group behind :func:`secureagg.cli.main` (needs the ``cli`` extra)."""

from __future__ import annotations

import click

from secureagg._exceptions import SecureAggError
from secureagg._version import __version__

__all__ = ["cli", "run"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="secureagg")
def cli() -> None:
    """Federated learning with differential privacy and secure aggregation."""


def _register() -> None:
    from secureagg.cli._audit import audit
    from secureagg.cli._demo import demo

    cli.add_command(demo)
    cli.add_command(audit)


def run(argv: list[str] | None) -> int:
    """Parse ``argv`` and run the command; the exit status (see :func:`secureagg.cli.main`)."""
    _register()
    try:
        cli.main(args=argv, prog_name="secureagg", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SecureAggError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    return 0
