"""What the HTTP functions with pages share: reading a posted HTML form, bounded (not a trigger module)."""

from urllib.parse import parse_qsl

import azure.functions as func


def posted_form(req: func.HttpRequest, max_bytes: int) -> dict[str, str]:
    """The fields of a url-encoded form POST; empty for anything else or anything larger than `max_bytes` (a
    page's form is a few short fields: a larger body is not from it)."""
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    body = req.get_body()
    if req.method.upper() != "POST" or content_type != "application/x-www-form-urlencoded":
        return {}
    if len(body) > max_bytes:
        return {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), max_num_fields=8))
