"""The specification's clauses, and the code that cites them, agree (spec README "Conventions").

- every clause ``**§N.M-K**`` is defined once, in the file of its section, and the clauses of each
  (sub)section are numbered 1..n without gaps;
- every clause the code cites (``§N.M-K`` anywhere in ``vrmproto/**/*.py``) is defined;
- every file in the README's table of sections exists, and every row of its "Requirements not
  testable from outside" table names a defined MUST clause;
- the worked examples of sections 2 to 4 are what the reference implementation computes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import defaultdict
from pathlib import Path

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from vrmproto import (
    Identity,
    MasterSeed,
    TermsOffer,
    _codec,
    fingerprint,
    key_to_text,
    open_envelope,
    sha256,
    sign_message,
)
from vrmproto._errors import DecodeError
from vrmproto._keys import Context
from vrmproto._relationship import rotation_proof_bytes
from vrmproto._vocab import TermRef, latest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec"
CODE = ROOT / "vrmproto"

#: Other engineers are still writing some sections. While this is True, citations into a section
#: whose file does not exist yet, and README rows for such files, are not checked. The lead sets
#: it to False once every section file is in.
ALLOW_MISSING_SECTIONS = False

_DEFINITION = re.compile(r"\*\*§(\d+(?:\.\d+)*)-(\d+)\*\*")
_CITATION = re.compile(r"§(\d+(?:\.\d+)*)-(\d+)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_SECTION_FILE = re.compile(r"^(\d\d)-[a-z0-9-]+\.md$")


def _section_files() -> dict[int, Path]:
    files: dict[int, Path] = {}
    for path in sorted(SPEC.glob("*.md")):
        m = _SECTION_FILE.match(path.name)
        if m:
            assert int(m.group(1)) not in files, f"two files for section {int(m.group(1))}"
            files[int(m.group(1))] = path
    return files


def _prose(path: Path) -> str:
    """The file without fenced code blocks (examples may show clause-like text)."""
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _definitions() -> dict[str, list[tuple[Path, int]]]:
    """``"3.3"`` -> [(file, clause number), …] in the order the clauses appear."""
    found: dict[str, list[tuple[Path, int]]] = defaultdict(list)
    for path in _section_files().values():
        for m in _DEFINITION.finditer(_prose(path)):
            found[m.group(1)].append((path, int(m.group(2))))
    return found


def _defined() -> set[str]:
    return {f"§{sub}-{n}" for sub, items in _definitions().items() for _, n in items}


def _section_of(clause: str) -> int:
    return int(clause.lstrip("§").split(".")[0].split("-")[0])


def test_section_files_are_found() -> None:
    files = _section_files()
    for n in (1, 2, 3, 4, 6, 11):
        assert n in files, f"section {n} has no file"


def test_clauses_are_numbered_without_gaps_or_duplicates() -> None:
    problems = []
    for sub, items in sorted(_definitions().items()):
        numbers = [n for _, n in items]
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            problems.append(f"§{sub}: clauses {numbers}, expected 1..{len(numbers)}")
    assert not problems, "\n".join(problems)


def test_clauses_are_defined_in_their_sections_file() -> None:
    files = _section_files()
    misplaced = [
        f"§{sub}-{n} is defined in {path.name}"
        for sub, items in _definitions().items()
        for path, n in items
        if files.get(int(sub.split(".")[0])) != path
    ]
    assert not misplaced, "\n".join(misplaced)


def _cited_in_code() -> dict[str, list[str]]:
    cited: dict[str, list[str]] = defaultdict(list)
    for path in sorted(CODE.rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in _CITATION.finditer(line):
                cited[m.group(0)].append(f"{path.relative_to(ROOT)}:{lineno}")
    return cited


def test_every_clause_the_code_cites_is_defined() -> None:
    files = _section_files()
    defined = _defined()
    missing = []
    for clause, where in sorted(_cited_in_code().items()):
        if clause in defined:
            continue
        if ALLOW_MISSING_SECTIONS and _section_of(clause) not in files:
            continue
        missing.append(f"{clause} (cited at {', '.join(where)})")
    assert not missing, "clauses cited by the code but not defined:\n" + "\n".join(missing)


def _readme_table(heading: str) -> list[list[str]]:
    text = (SPEC / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header row


def test_every_file_in_the_readme_table_exists() -> None:
    rows = _readme_table("## Sections")
    numbers = [int(row[0]) for row in rows]
    assert numbers == list(range(1, len(_section_files()) + 1)), numbers
    files = _section_files()
    missing = []
    for row in rows:
        m = re.search(r"\]\(([^)]+)\)", row[2])
        assert m, f"no link in {row}"
        path = SPEC / m.group(1)
        assert _SECTION_FILE.match(path.name), f"{path.name} is not named NN-name.md"
        assert int(path.name[:2]) == int(row[0]), f"section {row[0]} links {path.name}"
        if path.exists():
            assert files[int(row[0])] == path
        elif not (ALLOW_MISSING_SECTIONS and int(row[0]) not in files):
            missing.append(path.name)
    assert not missing, f"files named in the README's table do not exist: {missing}"


def test_untestable_requirements_are_defined_must_clauses() -> None:
    rows = _readme_table("## Requirements not testable from outside")
    assert rows, "the table is empty"
    files = _section_files()
    texts = {p: _prose(p) for p in files.values()}
    for clause, why in rows:
        assert re.fullmatch(r"§\d+(\.\d+)*-\d+", clause), clause
        assert why, f"{clause}: no reason given"
        section = files.get(_section_of(clause))
        if section is None and ALLOW_MISSING_SECTIONS:
            continue
        assert section is not None, f"{clause}: its section has no file"
        text = texts[section]
        start = text.find(f"**{clause}**")
        assert start >= 0, f"{clause} is not defined"
        following = [m.start() for m in _DEFINITION.finditer(text, start + 1)]
        following += [start + m.start() for m in re.finditer(r"^#", text[start:], re.MULTILINE)]
        end = min([*following, len(text)])
        assert "MUST" in text[start:end], f"{clause} is not a MUST clause"


# -- worked examples (spec §2.2–§2.6, §3.3, §3.5, §3.7, §4.6) -------------------------------------


def _compact(path: Path) -> str:
    """The file's text without any white space, so wrapped hex dumps read as one string."""
    return re.sub(r"\s+", "", path.read_text(encoding="utf-8"))


VENDOR = Identity(bytes(32))
MASTER = MasterSeed(bytes(range(32)))
THREAD = bytes(range(16, 32))
NOW = 1_767_225_600_000


def test_identity_examples() -> None:
    text = _compact(SPEC / "02-identities-and-keys.md")
    identities = [
        VENDOR,
        MASTER.pairwise(VENDOR.public_key, 0),
        MASTER.pairwise(VENDOR.public_key, 1),
        MASTER.for_intent(THREAD),
    ]
    for ident in identities:
        for value in (
            ident.public_key.hex(),
            key_to_text(ident.public_key),
            fingerprint(ident.public_key),
            ident.enc_public_key.hex(),
            key_to_text(ident.enc_public_key, "x25519"),
        ):
            assert value in text, value
    old, new = identities[1], identities[2]
    signed = rotation_proof_bytes(old.public_key, new.public_key, THREAD)
    assert signed == old.public_key + new.public_key + THREAD
    assert (Context.KEY_ROTATION + signed).hex() in text
    assert new.sign(Context.KEY_ROTATION, signed).hex() in text


def test_derivation_formulas() -> None:
    """§2.2-1, §2.3-1, §2.4-1 as written, computed without the library's derivation code."""
    text = _compact(SPEC / "02-identities-and-keys.md")

    def hmac256(key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, hashlib.sha256).digest()

    def keys(seed: bytes) -> tuple[bytes, bytes]:
        sign_secret = hmac256(seed, b"vrmproto/v1/identity/sign\0")
        enc_secret = hmac256(seed, b"vrmproto/v1/identity/enc\0")
        return (
            bytes(SigningKey(sign_secret).verify_key),
            bytes(PrivateKey(enc_secret).public_key),
        )

    assert hmac256(bytes(32), b"vrmproto/v1/identity/sign\0").hex() in text
    assert hmac256(bytes(32), b"vrmproto/v1/identity/enc\0").hex() in text
    assert keys(bytes(32)) == (VENDOR.public_key, VENDOR.enc_public_key)
    for generation in (0, 1):
        message = b"vrmproto/v1/pairwise\0" + VENDOR.public_key + generation.to_bytes(4, "big")
        seed = hmac256(MASTER.seed, message)
        assert seed.hex() in text
        ident = MASTER.pairwise(VENDOR.public_key, generation)
        assert keys(seed) == (ident.public_key, ident.enc_public_key)
    seed = hmac256(MASTER.seed, b"vrmproto/v1/intent\0" + THREAD)
    assert seed.hex() in text
    ident = MASTER.for_intent(THREAD)
    assert keys(seed) == (ident.public_key, ident.enc_public_key)


def test_context_table() -> None:
    text = _compact(SPEC / "03-wire-format.md")
    for context in (
        Context.MESSAGE,
        Context.DISCOVERY,
        Context.KEY_ROTATION,
        Context.SEALED,
        Context.REQUEST,
    ):
        assert context.hex() in text
        assert context[:-1].decode() + "\\0" in text


_ROW = re.compile(r"^\| `([0-9a-f]+)`(?: `([0-9a-f]+)`)? \| (.+?) \|$", re.MULTILINE)


def test_canonical_encoding_examples() -> None:
    rows = _ROW.findall((SPEC / "03-wire-format.md").read_text(encoding="utf-8"))
    assert len(rows) >= 15
    for first, rest, result in rows:
        data = bytes.fromhex(first + rest)
        refused = re.match(r"`malformed` \((§3\.3-\d)\)", result)
        if refused:
            with pytest.raises(DecodeError) as exc:
                _codec.decode(data)
            assert exc.value.clause == refused.group(1), (first + rest, exc.value)
        else:
            m = re.match(r"int ([−\d ]+)", result)
            assert m, result
            assert _codec.decode(data) == int(m.group(1).replace(" ", "").replace("−", "-"))


def _offer() -> tuple[Identity, bytes]:
    customer = MASTER.pairwise(VENDOR.public_key)
    terms = (TermRef.of(latest("vrm.no-tracking")),)
    body = TermsOffer(terms=terms, enc_key=customer.enc_public_key)
    offer = sign_message(
        body, identity=customer, recipient=VENDOR.public_key, thread=THREAD, prev=None,
        now=NOW, msg_id=bytes(range(16)),
    )
    return customer, offer.envelope


def test_envelope_examples() -> None:
    customer, offer_env = _offer()
    offer = open_envelope(offer_env, now=NOW, recipients=(VENDOR.public_key,))
    text4 = _compact(SPEC / "04-header-and-processing.md")
    for value in (offer_env, offer.hdr_bytes, offer.signature, offer.hash):
        assert value.hex() in text4
    assert offer.body_bytes is not None
    assert sha256(offer.body_bytes).hex() in text4

    receipt = sign_message(
        offer.receipt(), identity=VENDOR, recipient=customer.public_key, thread=THREAD,
        prev=None, now=NOW + 1000, msg_id=bytes(range(32, 48)),
    )
    text3 = _compact(SPEC / "03-wire-format.md")
    for value in (receipt.envelope, receipt.signature, receipt.hash, sha256(receipt.hdr_bytes)):
        assert value.hex() in text3
    assert f"{len(receipt.without_body().envelope)}bytes" in text3


def test_small_order_x25519_list_is_the_codes() -> None:
    """§2.1-5 writes libsodium's seven X25519 small-order values in full; they are exactly the
    ones the reference refuses with bad_key (each also with the top bit of its last byte set),
    and libsodium refuses each of them too."""
    from nacl.bindings import crypto_scalarmult  # noqa: PLC0415
    from nacl.exceptions import CryptoError  # noqa: PLC0415

    from vrmproto import ProtocolError  # noqa: PLC0415
    from vrmproto._keys import _SMALL_ORDER_X25519, check_enc_key  # noqa: PLC0415

    text = (SPEC / "02-identities-and-keys.md").read_text(encoding="utf-8")
    start = text.index("**§2.1-5**")
    listed = re.findall(r"^([0-9a-f]{64})\s", text[start:text.index("## 2.2", start)],
                        re.MULTILINE)
    assert len(listed) == 7
    assert {bytes.fromhex(h) for h in listed} == _SMALL_ORDER_X25519
    for value in _SMALL_ORDER_X25519:
        for key in (value, value[:31] + bytes([value[31] | 0x80])):
            with pytest.raises(ProtocolError) as info:
                check_enc_key(key)
            assert info.value.code.value == "bad_key"
            with pytest.raises(CryptoError):
                crypto_scalarmult(bytes(range(32)), key)
