"""Use case: the guest inventory, streamed page by page (constant memory on any tenant size)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from shared.domain.inventory import GuestRow, guest_row
from shared.ports.graph import InventoryGraph


async def guest_inventory(
    graph: InventoryGraph,
    *,
    with_sponsors: bool = True,
    on_page: Callable[[int], None] | None = None,
) -> AsyncIterator[GuestRow]:
    """Every guest as a GuestRow. `on_page(n)` is told the size of each page as it arrives (progress)."""
    sku_names = {sku.sku_id: sku.sku_part_number for sku in await graph.list_subscribed_skus()}
    async for page in graph.iter_guest_pages(with_sign_in_activity=True):
        sponsors = await graph.sponsors_of([u.id for u in page]) if with_sponsors and page else {}
        for user in page:
            yield guest_row(user, sku_names, sponsors.get(user.id, ()))
        if on_page:
            on_page(len(page))
