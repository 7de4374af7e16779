"""The ``secureagg`` command line: ``demo`` and ``audit``.

The entry point :func:`main` imports nothing beyond the standard library until it runs, so
an install without the ``cli`` extra gets one line naming the extra, not a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

_CLI_EXTRA = "cli"
"""The extra that brings the command line's dependencies: ``pip install 'secureagg[cli]'``."""

_EXTRA_MODULES = frozenset({"click", "rich", "matplotlib", "sklearn"})


def _missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a module of the ``cli`` extra that is not installed, else None.

    Parameters:
        exc: The error raised by the failed import.

    Returns:
        The message naming the extra to install, or None when ``exc`` is about another module.
    """
    top = (exc.name or "").partition(".")[0]
    if top not in _EXTRA_MODULES:
        return None
    return (
        f"secureagg: the command line needs the '{_CLI_EXTRA}' extra ({top} is not installed):"
        f" pip install 'secureagg[{_CLI_EXTRA}]'"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a user mistake ends in one line on stderr, never a traceback.

    Parameters:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for a bad setting, 1 for a file system error or a
        missing extra, 130 when interrupted.
    """
    try:
        from secureagg.cli._app import run

        return run(argv)
    except ModuleNotFoundError as exc:
        message = _missing_extra(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
