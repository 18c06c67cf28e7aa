"""The tests' and the demo's stand-in for the Functions host's queue delivery.

``drain`` hands every queued job to ``function_app``'s real queue handlers through
``shared.entry.localworker`` (the same code as ``python -m shared work --once``).
"""

from __future__ import annotations

from shared.entry import localworker


def drain(
    connection_string: str,
    queue_name: str,
    *,
    max_deliveries: int = 1000,
    visibility_timeout: int = 600,
) -> int:
    """Deliver queued jobs until the queue is empty; returns the number of deliveries."""
    import function_app  # noqa: PLC0415 - imported late: it builds the app on import

    return localworker.drain(
        connection_string,
        queue_name,
        handle=function_app.export_worker,
        give_up=function_app.export_gave_up,
        max_deliveries=max_deliveries,
        visibility_timeout=visibility_timeout,
    )
