"""Resource quantities in the API server's canonical form, so what the operator writes is what it reads back.

The API server stores `cpu: 0.5` as "500m" and `memory: 1.5Gi` as "1536Mi". Sent as the user wrote them,
they would never match the stored Deployment: every reconcile would patch it (and post an "Updated" Event)
for nothing. The rules are those of apimachinery's `resource.Quantity` canonicalisation: at most nine
decimals (rounded up), binary suffixes kept for whole byte counts of at least 1024, otherwise the largest
decimal suffix (or exponent) that leaves a whole mantissa.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_BINARY = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}


def canonical_quantity(value: int | str) -> str:
    match = _QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = Fraction(match[1]), match[2] or ""
    if suffix in _BINARY[1:]:
        amount = number * 1024 ** _BINARY.index(suffix)
    elif suffix[:1] in ("e", "E"):
        amount = number * Fraction(10) ** int(suffix[1:])
    else:
        amount = number * Fraction(10) ** next(exp for exp, name in _DECIMAL.items() if name == suffix)
    sign, amount = ("-" if amount < 0 else ""), abs(amount)
    if suffix in _BINARY[1:] and amount >= 1024 and amount.denominator == 1:
        mantissa, power = int(amount), 0
        while mantissa % 1024 == 0 and power < len(_BINARY) - 1:
            mantissa, power = mantissa // 1024, power + 1
        return f"{sign}{mantissa}{_BINARY[power]}"
    mantissa, exponent = math.ceil(amount * 10**9), -9
    if mantissa == 0:
        return "0"
    while mantissa % 1000 == 0 and exponent < 18:
        mantissa, exponent = mantissa // 1000, exponent + 3
    if suffix[:1] in ("e", "E"):
        return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
    return f"{sign}{mantissa}{_DECIMAL[exponent]}"
