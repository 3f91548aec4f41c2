"""vrmproto: an open, signed, peer-to-peer protocol for Vendor Relationship Management."""

__version__ = "0.1.0"
