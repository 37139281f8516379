"""The shop's database: read only. Its contract, streaming readers and the demo generator."""

from kl_sync.store.contract import customers, metadata, order_items, orders, system_log
from kl_sync.store.readers import STREAMS, Stream, read_after, store_engine

__all__ = [
    "STREAMS",
    "Stream",
    "customers",
    "metadata",
    "order_items",
    "orders",
    "read_after",
    "store_engine",
    "system_log",
]
