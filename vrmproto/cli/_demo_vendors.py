"""The reference vendors of `vrm demo`, as TOML — the same text as ``examples/vendors/*.toml``.

The demo is part of the installed package, so it cannot read the examples directory; a test
keeps these copies identical to the files there.
"""

from __future__ import annotations

__all__ = ["DEMO_VENDORS"]

DEMO_VENDORS: dict[str, str] = {}

DEMO_VENDORS["avis"] = """\
# Avis Park City: agrees to every term on the roster, rents 4x4s near the slopes.
# A reference vendor for `vrm vendor serve`, the examples and `vrm demo`.
# The seed below is public (it is in this file): use it only to try the protocol.
name = "Avis Park City"
seed = "ea96a22b36cdb3973a5e6f0c376ff97be0c053280b6410c816f44ba9d3f3743e"
accepts_terms = "all"

[[catalogue]]
description = "Jeep Grand Cherokee 4x4 or similar, Park City pick-up; Wizard: skip the counter"
keywords = ["suv"]
price = "289 USD"
conditions = ["no prepaid fuel: return it full", "no insurance added: your own cover applies"]

[[catalogue]]
description = "Toyota Corolla or similar, Park City pick-up"
keywords = ["sedan"]
price = "149 USD"

[[observed]]
field = "rental_history"
value = "2 rentals, Salt Lake City airport"
category = "behavioral"
source = "observed"
collected = 1767225600000
purposes = ["core-function"]
"""

DEMO_VENDORS["budget"] = """\
# Budget Salt Lake: will not promise "no third parties", and counters with "purpose only".
# A reference vendor for `vrm vendor serve`, the examples and `vrm demo`.
# The seed below is public (it is in this file): use it only to try the protocol.
name = "Budget Salt Lake"
seed = "eef7010a19794491b6779e2795788d233186a0c4a13fbb27846f000390d0ded5"
accepts_terms = [
    "vrm.no-tracking",
    "vrm.purpose-only",
    "vrm.delete-after",
    "vrm.return-on-request",
    "myterms.SD-BASE",
    "myterms.SD-BASE-DP",
    "myterms.PDC-INTENT",
]
counter = ["vrm.purpose-only"]

[[catalogue]]
description = "Ford Explorer AWD or similar, SLC airport; FastBreak: straight to the car"
keywords = ["suv"]
price = "245 USD"
conditions = ["no prepaid fuel option: return it full", "no insurance added"]
"""

DEMO_VENDORS["hertz"] = """\
# Hertz Wasatch: keeps data as long as it likes, so it rejects "delete after", with no counter.
# A reference vendor for `vrm vendor serve`, the examples and `vrm demo`.
# The seed below is public (it is in this file): use it only to try the protocol.
name = "Hertz Wasatch"
seed = "b4015f8149a1782caee5b8f3c33a82cbe9e4ee518171607bbd5678b909eefb9c"
accepts_terms = [
    "vrm.no-tracking",
    "vrm.no-third-party",
    "vrm.purpose-only",
    "vrm.return-on-request",
    "myterms.SD-BASE",
    "myterms.PDC-INTENT",
]

[[catalogue]]
description = "Toyota 4Runner 4WD or similar, Park City; Hertz 1 Club: your name on the board"
keywords = ["suv"]
price = "265 USD"
conditions = ["fuel: pay for what you use", "no insurance added"]
"""

DEMO_VENDORS["outfitters"] = """\
# Wasatch Outfitters: an outdoor-gear shop; agrees to every term, rents skis, not cars.
# A reference vendor for `vrm vendor serve`, the examples and `vrm demo`.
# The seed below is public (it is in this file): use it only to try the protocol.
name = "Wasatch Outfitters"
seed = "f71c33fdedae71d9e61868b65ecf3d9f4550e4bf9d492a387d869998f73c21fd"
accepts_terms = "all"

[[catalogue]]
description = "Ski and boot rental package, 5 days, fitted in store"
keywords = ["ski"]
price = "160 USD"

[[catalogue]]
description = "Snow chains for an SUV, rent for the week"
keywords = ["chains"]
price = "35 USD"

[[observed]]
field = "boot_size"
value = "27.5 mondopoint, fitted in store"
category = "biographical"
source = "observed"
collected = 1767225600000
purposes = ["contracted-service"]
"""

DEMO_VENDORS["lodge"] = """\
# Silver Star Lodge: where the skier stays; agrees to every term.
# A reference vendor for `vrm vendor serve`, the examples and `vrm demo`.
# The seed below is public (it is in this file): use it only to try the protocol.
name = "Silver Star Lodge"
seed = "2956e880cbaf545417ed46d3255c3616deac26d17ca2a6a0e017197188f001e2"
accepts_terms = "all"

[[catalogue]]
description = "Slope-side room for two, 5 nights"
keywords = ["room"]
price = "1150 USD"
"""

DEMO_VENDORS["market"] = """\
# Park City Market: the grocery that delivers; agrees to every term.
# A reference vendor for `vrm vendor serve`, the examples and `vrm demo`.
# The seed below is public (it is in this file): use it only to try the protocol.
name = "Park City Market"
seed = "7c223fe892cf6959c7a8875e3104f44590089abb897ed7af409fa1ac5a361f0a"
accepts_terms = "all"

[[catalogue]]
description = "Groceries delivered to your lodge on arrival day"
keywords = ["groceries"]
price = "25 USD"
"""
