"""Account events: published on the ``ocs:events`` channel, heard by every OCS node.

A message is JSON ``{"event": <name>, "account": <account id>}``:

* :data:`CREDIT_ADDED` after money or units were added to a bucket (a top-up, a credit,
  a bucket written with an amount), so the node holding a session under final unit
  indication sends it a Re-Auth-Request;
* :data:`ACCOUNT_BARRED` after an account was barred or closed, so its open sessions
  get an Abort-Session-Request.

This module is the only place that knows the channel and the message format: the
account store publishes with :func:`publish_account_event`, the Gy notifier
subscribes with :func:`subscribe_account_events` and reads with
:func:`parse_account_event`.
"""

from __future__ import annotations

import json

from quota_engine.store import keys
from quota_engine.store.clients import StoreClient, Subscriber

__all__ = [
    "ACCOUNT_BARRED",
    "CREDIT_ADDED",
    "parse_account_event",
    "publish_account_event",
    "subscribe_account_events",
]

CREDIT_ADDED = "credit_added"
ACCOUNT_BARRED = "account_barred"


async def publish_account_event(redis: StoreClient, event: str, account_id: str) -> None:
    """Publish ``event`` (:data:`CREDIT_ADDED` or :data:`ACCOUNT_BARRED`) for an account."""
    message = json.dumps({"event": event, "account": account_id})
    await redis.publish(keys.EVENTS_CHANNEL, message)


async def subscribe_account_events(pubsub: Subscriber) -> None:
    """Subscribe a redis-py ``PubSub`` to the account events."""
    await pubsub.subscribe(keys.EVENTS_CHANNEL)


def parse_account_event(data: bytes | str | None) -> tuple[str, str]:
    """``(event, account id)`` of one published message; :class:`ValueError` saying
    why when the message is not an account event."""
    try:
        event = json.loads(data or b"")
        name, account = event["event"], event["account"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"not an account event: {error!r}") from None
    if not isinstance(name, str) or not isinstance(account, str):
        raise ValueError("event and account must be strings")
    return name, account
