"""Every public namespace exports exactly its documented names, and nothing private.

The lists below ARE the documentation of the public API: adding, removing or renaming a public
name means changing them in the same commit, on purpose. For each namespace: ``__all__`` is the
list; each name imports; no private name is exported, nor a third party's object as ours; a
package shows nothing public that is not in ``__all__``; every exported class and function has a
docstring of its own.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

import pytest

PUBLIC: dict[str, tuple[str, ...]] = {
    "vrmproto": (
        "DATA_FORMAT", "DEFAULT_LIMITS", "MESSAGE_TYPES", "PII_CATEGORIES", "PURPOSES", "ROSTER",
        "SUPPORTED_VERSIONS", "TRANSITIONS", "VERSION", "AddressUpdate", "Body", "Context",
        "DataErased", "DataRecord", "DataRequest", "DataReturn", "DataShare", "DataWithdraw",
        "DecodeError", "Divergence", "Entry", "FieldsContent", "Header", "History", "Identity",
        "IntentDecline", "IntentOffer", "Intentcast", "KeyRotate", "Limits", "MasterSeed", "Money",
        "PeerProblemError", "Problem", "ProblemReport", "ProtocolError", "Receipt", "Received",
        "RecordsContent", "Relationship", "RelationshipEnd", "Role", "Sent", "SignatureError",
        "Signed", "State", "StateError", "Term", "TermRef", "TermsAccept", "TermsOffer",
        "TermsReject", "TransportError", "ValidationError", "VrmError", "__version__", "compare",
        "decode", "encode", "fingerprint", "get_term", "is_valid_key", "key_from_text",
        "key_to_text", "latest", "open_envelope", "open_sealed", "problem_for", "seal",
        "seal_content", "sha256", "sign_message", "sign_problem", "verify", "verify_entries",
    ),
    "vrmproto.client": (
        "DEFAULT_CONCURRENCY", "DEFAULT_SCHEDULE", "DEFAULT_TERMS", "FANOUT_RETRY", "NO_RETRY",
        "Agent", "Answer", "CatchUp", "ConnectResult", "ConnectStatus", "CustomerNode", "Delivery",
        "DeliveryStatus", "EndpointClient", "FanoutReport", "ForeignStore", "IntentcastResult",
        "InvalidResponse", "KeyChangedError", "NotFound", "Offer", "Outbox", "OutboxRun",
        "PeerProblemError", "PeerRuleError", "Progress",
        "ProgressEvent", "Queued", "Reconciliation", "Records", "Ref", "RelationshipView",
        "RetryPolicy", "Stage", "Target", "Transient", "Transport", "TransportError", "Unreachable",
        "VendorResult", "collect_pages", "discovery_from_answer", "fan_out",
        "history_from_answer", "replies_from_answer", "transient_from_answer",
    ),
    "vrmproto.server": (
        "DEFAULT_CONNECTION_LIMITS", "ENDPOINT_KEY", "NO_CONTENT", "CatalogueItem", "ConfigError",
        "ConnectionGuard", "ConnectionLimits", "Deployment", "Endpoint", "Event", "HeldRecord",
        "Hook", "LocalVendor", "Policy", "RateLimiter", "ReferencePolicy", "Response", "Server",
        "StorageBudget", "VendorConfig", "load_vendor_config", "make_app", "serve", "serve_app",
    ),
    "vrmproto.store": (
        "Commit", "DedupeRecord", "DraftRecord", "HeldRecord", "HistoryEntry", "IntentRecord",
        "MemoryStore", "NewOutboxItem", "OfferRecord", "OutboxItem", "PostgresConfig",
        "PostgresStore", "RelationshipRecord", "SQLiteStore", "SavePoint", "ShareNote", "Store",
        "StoreConflict", "StoreError",
        "StoreStats", "StoreUsage", "ThreadKind", "ThreadRecord",
        "DeadLetter", "EventRecord",  # the event feed (issue 14)
        "EventWatch",  # its wake-ups across processes (issue 15)
        "FailingEvent", "StoreCounts",  # events being retried, counts for /metrics (s17)
        "SchemaTooNew", "StoreBusy",  # a newer vrmproto's database, a write lock held (s22b)
    ),
    "vrmproto.testing": (
        "DEFAULT_REGISTRY", "Case", "CaseContext", "CaseFailed", "CaseRecord", "Exchange", "Info",
        "Level", "MemoryTransport", "NoResponse", "Outcome", "Registry", "SuiteCannotRun",
        "SuiteResult", "Unimplemented", "case", "run_suite", "write_reports",
    ),
    "vrmproto.binding": (
        "CONTENT_TYPE", "DEFAULT_HISTORY_PATH", "DEFAULT_INBOX_PATH", "DISCOVERY_FORMAT",
        "MAX_DISCOVERY_BYTES", "SIGNATURE_HEADER", "SPOKEN_VERSIONS", "WELL_KNOWN_PATH",
        "DiscoveryDocument", "HistoryRequest", "build_discovery", "decode_history",
        "decode_replies", "discovery_url", "encode_history", "encode_replies",
        "open_history_request", "sign_history_request", "verify_discovery",
    ),
    "vrmproto.crm": (  # the CRM bridge's sans-IO half (issue 14); vrmproto.crm.tryton needs trytond
        "Change", "Erase", "Forget", "Hold", "Lead", "Note", "TakeUp", "changes_of",
    ),
    "vrmproto.discovery": (
        "MAX_FOUND", "MAX_TXT_BYTES", "RESOLVE_AT_ONCE", "SERVICE_TYPE", "Found", "advertise",
        "browse", "fetch_discovery", "instance_name", "txt_record",
    ),
    "vrmproto.testing.transport": (
        "MemoryTransport", "Request", "Route",
    ),
    "vrmproto.ui": (
        "HOST", "Guard", "Ui", "UiServer", "make_app", "new_token",
    ),
}

#: Modules (not packages) whose own imports are visible beside ``__all__``, as any module's are.
_MODULES = {"vrmproto.discovery", "vrmproto.testing.transport"}


def _exported(module: str) -> list[tuple[str, Any]]:
    mod = importlib.import_module(module)
    return [(name, getattr(mod, name)) for name in mod.__all__]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_exactly_the_documented_list(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    assert len(set(mod.__all__)) == len(mod.__all__), "a name is listed twice"


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_each_name_imports(module: str) -> None:
    for name in PUBLIC[module]:
        namespace: dict[str, Any] = {}
        exec(f"from {module} import {name}", namespace)
        assert name in namespace
    star: dict[str, Any] = {}
    exec(f"from {module} import *", star)
    assert set(star) - {"__builtins__"} == set(PUBLIC[module])


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_nothing_private_leaks(module: str) -> None:
    mod = importlib.import_module(module)
    private = [n for n in mod.__all__ if n.startswith("_") and n != "__version__"]
    assert private == []
    foreign = [
        name for name, obj in _exported(module)
        if (inspect.isclass(obj) or inspect.isfunction(obj))
        and not obj.__module__.startswith("vrmproto.")
    ]  # fmt: skip
    assert foreign == [], "a third party's object exported as ours"
    if module not in _MODULES:  # a package shows its API and its subpackages, nothing else
        visible = {n for n in dir(mod) if not n.startswith("_")
                   and not isinstance(getattr(mod, n), ModuleType)}  # fmt: skip
        assert visible - set(mod.__all__) == set()


def _own_doc(obj: Any) -> str | None:
    """The docstring written for ``obj``: not an inherited one, not a dataclass's generated
    signature."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")):
        return None
    return str(doc)


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_class_and_function_has_a_docstring(module: str) -> None:
    assert importlib.import_module(module).__doc__
    missing = [
        name for name, obj in _exported(module)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not _own_doc(obj)
    ]  # fmt: skip
    assert missing == []
