"""``python -m cryptolstm`` and the ``cryptolstm`` script: the command line (`cryptolstm.cli`).

Importing the command line takes a second or more (typer, pandas); a Ctrl-C meanwhile is one
sentence too, not a traceback of whatever was being imported."""

import sys


def main() -> None:
    """Run the command line; a Ctrl-C while it is still being imported exits 130 with one sentence."""
    try:
        from cryptolstm.cli import main as command_line
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing was done.\n")
        raise SystemExit(130) from None
    command_line()


if __name__ == "__main__":
    main()
