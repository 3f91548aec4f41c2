"""The ISO 4217 currency codes a person may name a price in (``--max-price 300USD``).

``300UDS`` used to be sent as it was, and every vendor declined an intentcast in a currency that
does not exist. The list is ISO 4217's current codes (table A.1, 2025), with the funds codes
and the ones being replaced (ANG by XCG, SLL by SLE, ZWL by ZWG) still accepted.
"""

from __future__ import annotations

import difflib

__all__ = ["ISO_4217", "check_currency"]

_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB
EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR
MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG
XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL
"""
ISO_4217: frozenset[str] = frozenset(_CODES.split())


def check_currency(code: str) -> str:
    """``code`` in upper case if ISO 4217 lists it; else ValueError naming the nearest codes."""
    upper = code.upper()
    if upper in ISO_4217:
        return upper
    near = difflib.get_close_matches(upper, sorted(ISO_4217), n=3, cutoff=0.6)
    anagram = [c for c in sorted(ISO_4217) if sorted(c) == sorted(upper)]
    guesses = list(dict.fromkeys(anagram + near))[:3]
    hint = f"; did you mean {' or '.join(guesses)}?" if guesses else ""
    raise ValueError(f"{code!r} is not an ISO 4217 currency code{hint}")
