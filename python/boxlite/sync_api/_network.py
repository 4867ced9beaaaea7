"""``boxlite.sync_api._network``: where BoxLite's users import ``SyncNetworkHandle`` from."""

from __future__ import annotations

from .._network import SyncNetworkHandle

__all__ = ["SyncNetworkHandle"]
