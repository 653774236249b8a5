"""``python -m cryptolstm`` and the ``cryptolstm`` script: the command line (`cryptolstm.cli`).

Importing the command line takes a second or more (typer, pandas); a Ctrl-C meanwhile is one
sentence too, not a traceback of whatever was being imported."""

import os
import signal
import sys


def main() -> None:
    """Run the command line; a Ctrl-C while it is still being imported exits 130 with one sentence.

    The Ctrl-C is noted, not raised, until the import is over: raised inside a C extension's
    initialisation it becomes that library's ImportError, or ends the process by the signal."""
    noted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        from cryptolstm.cli import main as command_line
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        sys.stderr.write("interrupted: nothing was done.\n")
        sys.stderr.flush()
        os._exit(130)  # nothing was done, so there is nothing to clean up
    command_line()


if __name__ == "__main__":
    main()
