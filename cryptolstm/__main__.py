"""``python -m cryptolstm`` and the ``cryptolstm`` script: the command line (`cryptolstm.cli`), whose import
takes a second or more (typer, pandas): a Ctrl-C meanwhile is one sentence too, not a traceback."""

import os
import sys

from cryptolstm.processes import interrupt_after


def main() -> None:
    """Run the command line; a Ctrl-C during its import exits 130 with one sentence once the import is over."""
    try:
        with interrupt_after():
            from cryptolstm.cli import main as command_line
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was done.\n")
        sys.stderr.flush()
        os._exit(130)  # nothing was done, so there is nothing to clean up
    command_line()


if __name__ == "__main__":
    main()
