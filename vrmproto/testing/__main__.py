"""``python -m vrmproto.testing URL …``: the conformance suite without the ``vrm`` command."""

from vrmproto.testing._cli import conformance

if __name__ == "__main__":
    conformance(prog_name="python -m vrmproto.testing")
