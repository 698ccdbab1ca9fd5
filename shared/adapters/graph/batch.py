"""Graph's JSON `$batch`: the gateway's own batched reads, and the executor (20 requests a batch, per-item 429s
re-submitted after the longest Retry-After among them)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from shared.adapters.graph.client import GraphClient
from shared.adapters.graph.mapping import USER_FIELDS
from shared.ports.graph import BATCH_LIMIT, BatchRequest, BatchResult, retry_after
from shared.ports.graph import BatchOps as PortBatchOps

__all__ = ["BatchOps", "GraphBatchClient"]

log = logging.getLogger(__name__)


class BatchOps(PortBatchOps):
    """The port's batchable actions, and the reads only the gateway batches."""

    @staticmethod
    def list_sponsors(user_id: str) -> BatchRequest:
        return BatchRequest(
            f"sponsors:{user_id}",
            "GET",
            f"/users/{user_id}/sponsors?$select=id,displayName,mail,userPrincipalName",
        )

    @staticmethod
    def list_group_members(group_id: str, top: int = 999) -> BatchRequest:
        return BatchRequest(
            f"members:{group_id}",
            "GET",
            f"/groups/{group_id}/members?$select=id,displayName,mail,userPrincipalName&$top={top}",
        )

    @staticmethod
    def list_transitive_member_ids(group_id: str) -> BatchRequest:
        """group-list-transitivemembers.md: every member, nested groups' members included, as directoryObjects
        (each with its @odata.type). Not the `/microsoft.graph.user` cast: the page says a cast needs advanced
        query parameters (ConsistencyLevel: eventual, $count=true), i.e. an index that may lag recent changes."""
        return BatchRequest(
            f"transitiveMembers:{group_id}", "GET", f"/groups/{group_id}/transitiveMembers?$select=id&$top=999"
        )

    @staticmethod
    def get_user(user_id: str, select: Sequence[str] = USER_FIELDS) -> BatchRequest:
        return BatchRequest(f"get:{user_id}", "GET", f"/users/{user_id}?$select={','.join(select)}")


class GraphBatchClient(GraphClient):
    """The client, able to run JSON batches."""

    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResult]:
        """Run requests in JSON batches of 20; per-item results in the order given.

        Items Graph throttled (inner 429) are re-submitted after the longest Retry-After among them, up to
        GRAPH_BATCH_MAX_ROUNDS rounds; what is still throttled then comes back with status 429.
        """
        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique")
        results: dict[str, BatchResult] = {}
        for start in range(0, len(requests), BATCH_LIMIT):
            chunk = list(requests[start : start + BATCH_LIMIT])
            for result in await self._run_batch_chunk(chunk):
                results[result.id] = result
        return [results[i] for i in ids]

    async def _run_batch_chunk(self, chunk: list[BatchRequest]) -> list[BatchResult]:
        pending = chunk
        done: list[BatchResult] = []
        for round_number in range(1, self.config.batch_max_rounds + 1):
            answers = await self._post_batch(pending)
            throttled = [a for a in answers if a.status == 429]
            done.extend(a for a in answers if a.status != 429)
            if not throttled:
                return done
            if round_number == self.config.batch_max_rounds:
                done.extend(throttled)
                log.warning("%d batch item(s) still throttled after %d rounds", len(throttled), round_number)
                return done
            waits = [retry_after(a.headers) for a in throttled]
            delay = max((w for w in waits if w is not None), default=min(2.0**round_number, 30.0))
            log.info("%d batch item(s) throttled; retrying them in %.1f s", len(throttled), delay)
            self.throttle(delay)
            by_id = {r.id: r for r in pending}
            pending = [by_id[a.id] for a in throttled]
            await self._sleep(delay)
        return done  # pragma: no cover - the loop always returns

    async def _post_batch(self, chunk: list[BatchRequest]) -> list[BatchResult]:
        adapter = self.client.request_adapter
        info = RequestInformation(method=Method.POST, url_template="{+baseurl}/$batch")
        info.path_parameters = {"baseurl": adapter.base_url}
        info.headers.try_add("Accept", "application/json")
        info.headers.try_add("Content-Type", "application/json")
        info.content = json.dumps({"requests": [r.to_json() for r in chunk]}).encode()

        async def send() -> bytes | None:
            raw: bytes | None = await adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
            return raw

        caller = self._call if all(r.idempotent for r in chunk) else self._call_not_idempotent
        raw = await caller(f"$batch of {len(chunk)}", send)
        payload = json.loads(raw or b"{}")
        answers = []
        for item in payload.get("responses", ()):
            body = item.get("body")
            answers.append(
                BatchResult(
                    id=str(item.get("id")),
                    status=int(item.get("status", 0)),
                    body=body if isinstance(body, dict) else None,
                    headers={str(k): str(v) for k, v in (item.get("headers") or {}).items()},
                )
            )
        missing = {r.id for r in chunk} - {a.id for a in answers}
        for request_id in sorted(missing):
            answers.append(
                BatchResult(request_id, 0, {"error": {"code": "missingResponse", "message": "not in batch reply"}})
            )
        return answers
