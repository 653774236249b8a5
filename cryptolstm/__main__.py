"""``python -m cryptolstm``: the same CLI as the ``cryptolstm`` console script."""

from cryptolstm.cli import main

main()
