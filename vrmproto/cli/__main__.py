"""``python -m vrmproto.cli``: the same as the ``vrm`` console script."""

from vrmproto.cli import main

main()
