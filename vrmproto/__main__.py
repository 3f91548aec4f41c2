"""``python -m vrmproto``: the ``vrm`` command, for when it is not on the PATH."""

from vrmproto.cli import main

if __name__ == "__main__":
    main()
