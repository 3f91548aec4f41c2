"""vrmproto.testing: the conformance suite (work in progress)."""
