"""pytest plugin for the vrmproto conformance suite (work in progress)."""
