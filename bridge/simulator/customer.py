"""The customer data of a conversation in either API's shape.

A conversation keeps what its create carried (a gateway `user` or a v2 `customer`); `shown_as`
gives it in the shape of the API that asks, so either API can read any conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.eightbyeight.config import ApiFamily

# Keys both shapes carry as plain fields. Gateway `userId` and v2 `customerId` name the same
# thing (the id a CRM screen-pop uses).
_COMMON = ("name", "email", "phone", "company", "caseId", "language")


def to_gateway_user(customer: Mapping[str, Any]) -> dict[str, Any]:
    """v2 `customer` -> gateway `user`: known keys as fields, the rest in additionalProperties."""
    user: dict[str, Any] = {k: customer[k] for k in _COMMON if k in customer}
    if "customerId" in customer:
        user["userId"] = customer["customerId"]
    extra = [
        {"key": k, "value": v}
        for k, v in customer.items()
        if k not in _COMMON and k != "customerId"
    ]
    if extra:
        user["additionalProperties"] = extra
    return user


def to_v2_customer(user: Mapping[str, Any]) -> dict[str, Any]:
    """gateway `user` -> v2 `customer`: flat keys, additionalProperties spread out."""
    flat: dict[str, Any] = {}
    for key, value in user.items():
        if key == "additionalProperties" and isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping) and "key" in item:
                    flat[str(item["key"])] = item.get("value")
        elif key == "userId":
            flat["customerId"] = value
        else:
            flat[key] = value
    return flat


def shown_as(api: ApiFamily, customer: Mapping[str, Any], created_by: ApiFamily) -> dict[str, Any]:
    """`customer` (as posted through `created_by`) in the shape `api` uses."""
    if api == created_by:
        return dict(customer)
    return to_gateway_user(customer) if api == "gateway" else to_v2_customer(customer)


def language(customer: Mapping[str, Any]) -> str:
    value = customer.get("language")
    return value if isinstance(value, str) and value else "en"
