"""The boxes the sign-up page shows, as the store knows them: its catalog (order lines in the box
category) and the box a ``started.signup`` log row names."""

from __future__ import annotations

import json
import random
from decimal import Decimal, InvalidOperation

from sqlalchemy import Engine, select

from kl_sync.onsite.snippets import BOX_CATEGORY, BoxProduct
from kl_sync.store.contract import order_items


def box_from_log(data: str | None, site_url: str) -> BoxProduct | None:
    """The box a ``started.signup`` log row names, if its JSON is readable."""
    try:
        parsed = json.loads(data) if data else None
        if not isinstance(parsed, dict) or not parsed.get("box"):
            return None
        price = Decimal(str(parsed.get("price", "0")))
    except (ValueError, InvalidOperation):
        return None
    name = str(parsed["box"])
    return BoxProduct(str(parsed.get("product_id", "")), name, price, _product_url(site_url, name))


def _product_url(site_url: str, name: str) -> str:
    slug = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or "x"
    return f"{site_url.rstrip('/')}/shop/item/{slug}"


def read_box_catalog(store_engine: Engine, *, site_url: str) -> dict[str, BoxProduct]:
    """Boxes by name, from order lines in the box category (their latest price and links)."""
    query = (
        select(
            order_items.c.product_id,
            order_items.c.product_name,
            order_items.c.item_price,
            order_items.c.product_url,
            order_items.c.image_url,
            order_items.c.categories,
        )
        .where(order_items.c.categories.like(f"%{BOX_CATEGORY}%"))
        .order_by(order_items.c.id)
    )
    catalog: dict[str, BoxProduct] = {}
    with store_engine.connect() as conn:
        for row in conn.execute(query):
            categories = [c.strip() for c in (row.categories or "").split(",")]
            if BOX_CATEGORY not in categories:
                continue
            catalog[row.product_name] = BoxProduct(
                str(row.product_id),
                row.product_name,
                Decimal(str(row.item_price)),
                row.product_url or _product_url(site_url, row.product_name),
                row.image_url or "",
            )
    return catalog


def chosen_box(
    logged: BoxProduct | None, customer_box: str | None, catalog: dict[str, BoxProduct], rng: random.Random
) -> BoxProduct | None:
    """The box step 1 showed: the one the log row names, else the customer's, else (the store kept no
    trace of it, but the browser still showed one) a catalog box picked by the customer's generator."""
    if logged is not None:
        return catalog.get(logged.name, logged)
    if customer_box in catalog:
        return catalog[customer_box]
    return catalog[rng.choice(sorted(catalog))] if catalog else None
