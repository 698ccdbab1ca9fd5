"""SDK and transport failures as the port's GraphError: one translation for every call the gateway makes."""

from __future__ import annotations

import httpx
from kiota_abstractions.api_error import APIError
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from shared.ports.graph import GraphError, header, retry_after

__all__ = ["to_graph_error"]


def to_graph_error(exc: BaseException, operation: str) -> GraphError:
    """`exc` as a GraphError naming `operation`; anything that is not a Graph or transport failure is re-raised."""
    if isinstance(exc, GraphError):
        return exc
    if isinstance(exc, ODataError):
        main = exc.error
        return GraphError(
            exc.response_status_code,
            main.code if main else None,
            (main.message if main else None) or "no error message",
            operation=operation,
            retry_after=retry_after(exc.response_headers),
            location=header(exc.response_headers, "location"),
        )
    if isinstance(exc, APIError):
        return GraphError(
            exc.response_status_code,
            None,
            exc.message or type(exc).__name__,
            operation=operation,
            retry_after=retry_after(exc.response_headers),
            location=header(exc.response_headers, "location"),
        )
    if isinstance(exc, httpx.TimeoutException):
        return GraphError(None, "timeout", f"no answer in time ({type(exc).__name__})", operation=operation)
    if isinstance(exc, httpx.HTTPError):
        return GraphError(None, "transport", f"{type(exc).__name__}: {exc}", operation=operation)
    raise exc
