"""One adapter per external system: Blob, Table and Queue Storage, Key Vault, Snapchat.

Adapters import only from ``shared.core``; they turn their SDK's failures into the errors
of ``shared.core.errors``."""
