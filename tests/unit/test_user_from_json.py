"""Guest list pages are parsed from raw JSON (the SDK's models cost ~10 ms a user): the result must be what
the SDK path gives, for every kind of user in the sample tenant."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from kiota_serialization_json.json_parse_node import JsonParseNode
from msgraph.generated.models.user import User as SdkUser

from shared.adapters.graph import USER_FIELDS, user_from_json, user_from_sdk

CONTOSO = Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json"


def as_listed(user: dict[str, Any]) -> dict[str, Any]:
    """The user as a list page carries it: the selected fields plus signInActivity."""
    return {name: user.get(name) for name in (*USER_FIELDS, "signInActivity")}


def via_sdk(user: dict[str, Any]) -> Any:
    node = JsonParseNode(json.loads(json.dumps(user)))
    return user_from_sdk(node.get_object_value(SdkUser))


def test_raw_json_users_equal_the_sdk_parsed_ones() -> None:
    users = [as_listed(u) for u in json.loads(CONTOSO.read_text())["users"]]
    users.append(
        {
            **users[0],
            "createdDateTime": "2024-02-03T04:05:06.1234567Z",  # 7 fractional digits, as Graph may send
            "signInActivity": {
                "lastSignInDateTime": "2024-05-01T10:00:00.5Z",
                "lastNonInteractiveSignInDateTime": None,
            },
            "assignedLicenses": [{"skuId": "078D2B04-F1BD-4111-BBD4-B4B1B354CEF4", "disabledPlans": []}],
        }
    )
    assert len(users) > 300
    for user in users:
        assert user_from_json(user) == via_sdk(user), user["id"]
    created = user_from_json(users[-1]).created
    assert created is not None and created.microsecond == 123456


def test_timestamps_with_an_offset_parse_like_z() -> None:
    base = {"id": "u1", "userType": "Guest"}
    z = user_from_json({**base, "createdDateTime": "2026-12-08T09:00:00Z"})
    offset = user_from_json({**base, "createdDateTime": "2026-12-08T09:00:00+00:00"})
    fraction = user_from_json({**base, "createdDateTime": "2026-12-08T10:00:00.1234567+01:00"})
    assert z.created == offset.created
    assert fraction.created is not None and z.created is not None
    assert fraction.created - z.created == timedelta(microseconds=123456)
