"""One way for command-line entry points to report a user's mistake: one line on stderr, exit 2.

A user error is something the person running the command can fix (a missing file, a bad flag value,
a malformed input file). It is printed as one line, ``PROG: error: MESSAGE``, and the process exits
with status 2 (the argparse convention for usage errors). Anything else is a bug and keeps its full
traceback. ``--verbose`` (anywhere on the command line; removed before the entry point sees its
arguments) prints the traceback of user errors too.

Which exceptions are user errors: :class:`UserError` and its subclasses, the file-system errors
``FileNotFoundError``, ``IsADirectoryError``, ``NotADirectoryError``, ``PermissionError``,
``FileExistsError``, and whatever the entry point adds through ``user_errors``
(:class:`toolrl.data.validation.DataFormatError`, a malformed input file, is a :class:`UserError`).
KeyboardInterrupt prints ``interrupted`` and exits 130.

Usage::

    if __name__ == "__main__":
        run_cli(main)                        # main(argv: list[str]) -> int | None
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
VERBOSE_FLAG = "--verbose"


class UserError(ValueError):
    """A problem the user can fix (input, flag or file); CLIs print it as one line and exit 2."""


_FILE_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def default_user_errors() -> tuple[type[BaseException], ...]:
    """The exception types every toolrl CLI treats as user errors."""
    return (UserError, *_FILE_ERRORS)


def one_line(error: BaseException) -> str:
    """The message of an exception on one line (inner newlines become ``; ``)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    out = ""
    for part in parts:
        out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out


def run_cli(main_fn: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, *,
            prog: str | None = None, user_errors: tuple[type[BaseException], ...] = ()) -> NoReturn:
    """Runs ``main_fn(argv)`` and exits with its return code (None -> 0).

    Args:
      main_fn: the entry point; receives the arguments without the program name and without ``--verbose``.
      argv: the arguments (default ``sys.argv[1:]``).
      prog: the name in the error line (default: the program's name).
      user_errors: more exception types to report as user errors.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = VERBOSE_FLAG in args
    args = [a for a in args if a != VERBOSE_FLAG]
    prog = prog or os.path.basename(sys.argv[0] or "toolrl")
    try:
        code = main_fn(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except default_user_errors() + tuple(user_errors) as error:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(0 if code is None else int(code))
