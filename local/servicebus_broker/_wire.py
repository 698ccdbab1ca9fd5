"""AMQP encoding details the Service Bus SDK relies on: batches, annotations, management replies.

Proton hands binary values out as views into buffers it reuses, so everything decoded here is copied into
plain Python objects before it is stored.
"""

from __future__ import annotations

import logging
from typing import Any

from proton import UNDESCRIBED, Array, Data, Described, Message, symbol, timestamp, ubyte, uint, ulong

log = logging.getLogger("local.servicebus_broker")

SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
LOCKED_UNTIL = symbol("x-opt-locked-until")
LOCK_TOKEN = symbol("x-opt-lock-token")
SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")
MESSAGE_STATE = symbol("x-opt-message-state")

_DATA_SECTION = 0x75
_BODY_SECTIONS = {0x75, 0x76, 0x77}
_MESSAGE_SECTION_CODES = range(0x70, 0x79)


def plain(value: Any) -> Any:
    """Deep-copy a decoded AMQP value so no part of it aliases proton's buffers."""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Array):
        return Array(value.descriptor, value.type, *[plain(v) for v in value.elements])
    if isinstance(value, Described):
        return Described(plain(value.descriptor), plain(value.value))
    return value


def decode_message(raw: bytes) -> Message:
    message = Message()
    message.decode(raw)
    message.body = plain(message.body)
    message.id = plain(message.id)
    message.correlation_id = plain(message.correlation_id)
    message.properties = plain(message.properties)
    message.annotations = plain(message.annotations)
    message.instructions = plain(message.instructions)
    return message


def _sections(raw: bytes) -> list[tuple[Any, Any]]:
    """Split an encoded message into (descriptor, value) sections."""
    sections = []
    pos = 0
    while pos < len(raw):
        data = Data()
        used = data.decode(raw[pos:])
        if used <= 0:
            raise ValueError("undecodable AMQP section")
        pos += used
        data.rewind()
        data.next()
        obj = data.get_object()
        if not isinstance(obj, Described):
            raise ValueError("AMQP message section is not a described value")
        sections.append((obj.descriptor, plain(obj.value)))
    return sections


def _looks_like_message(payload: Any) -> bool:
    return (
        isinstance(payload, bytes)
        and len(payload) >= 3
        and payload[0] == 0x00
        and payload[1] == 0x53
        and payload[2] in _MESSAGE_SECTION_CODES
    )


def split_transfer(raw: bytes) -> list[Message]:
    """One transfer as messages: a batch (format 0x80013700) carries one whole message per data section.

    Proton's Python binding does not expose the transfer's message-format, so a batch is recognised by its
    shape: every body section is a data section holding an encoded AMQP message.
    """
    raw = bytes(raw)
    try:
        sections = _sections(raw)
    except ValueError:
        return [decode_message(raw)]
    bodies = [(d, v) for d, v in sections if d in _BODY_SECTIONS]
    if bodies and all(d == _DATA_SECTION and _looks_like_message(v) for d, v in bodies):
        try:
            return [decode_message(v) for _, v in bodies]
        except Exception as exc:  # not a batch after all: treat the transfer as one opaque message
            log.debug("data sections looked like a batch but did not decode (%s)", exc)
    return [decode_message(raw)]


def scheduled_time_s(message: Message) -> float | None:
    annotations: dict[Any, Any] = dict(message.annotations or {})
    value = annotations.get(SCHEDULED_ENQUEUE_TIME)
    if value is None:
        value = annotations.get("x-opt-scheduled-enqueue-time")
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value) / 1000.0


def ms(seconds: float) -> timestamp:
    return timestamp(int(seconds * 1000))


def stamp(
    message: Message,
    *,
    sequence_number: int,
    enqueued_at: float,
    delivery_count: int,
    locked_until: float | None = None,
    state: int | None = None,
) -> bytes:
    """Encode a stored message as Service Bus delivers it: broker annotations and delivery count set."""
    annotations: dict[Any, Any] = dict(message.annotations or {})
    annotations[SEQUENCE_NUMBER] = sequence_number
    annotations[ENQUEUED_TIME] = ms(enqueued_at)
    if locked_until is not None:
        annotations[LOCKED_UNTIL] = ms(locked_until)
    else:
        annotations.pop(LOCKED_UNTIL, None)
    if state is not None:
        annotations[MESSAGE_STATE] = state
    message.annotations = annotations
    message.delivery_count = 0
    return with_header(bytes(message.encode()), message, delivery_count)


def with_header(encoded: bytes, message: Message, delivery_count: int) -> bytes:
    """Replace proton's header section by one that always carries delivery-count.

    Proton leaves out a header whose fields are all defaults, which the SDK reads as delivery_count None;
    Service Bus always sends it, so a first delivery reads 0.
    """
    rest = encoded
    data = Data()
    used = data.decode(encoded)
    data.rewind()
    data.next()
    first = data.get_object()
    if isinstance(first, Described) and first.descriptor == 0x70:
        rest = encoded[used:]
    header = Data()
    header.put_object(
        Described(
            ulong(0x70),
            [
                bool(message.durable),
                ubyte(message.priority),
                uint(int(message.ttl * 1000)) if message.ttl else None,
                bool(message.first_acquirer),
                uint(delivery_count),
            ],
        )
    )
    return bytes(header.encode()) + rest


def get_field(body: Any, name: str) -> Any:
    """Read a management request map entry whatever the key's AMQP type (string or symbol)."""
    if not isinstance(body, dict):
        return None
    for key, value in body.items():
        if str(key) == name:
            return value
    return None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def timestamps(values: list[float]) -> Array:
    return Array(UNDESCRIBED, Data.TIMESTAMP, *[ms(v) for v in values])  # type: ignore[arg-type]


def longs(values: list[int]) -> Array:
    return Array(UNDESCRIBED, Data.LONG, *values)  # type: ignore[arg-type]
