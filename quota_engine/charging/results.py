"""The engine's answers: a script's answer, or a price enquiry, as a
:class:`~quota_engine.model.ChargingResult`."""

from __future__ import annotations

from quota_engine.model import ChargingResult, Outcome, ServiceGrant, Unit
from quota_engine.store.contract import ChargeAnswer, EventService

__all__ = ["charging_result", "price_enquiry_result"]

_UNITS = {u.value: u for u in Unit}


def charging_result(
    answer: ChargeAnswer, account: str | None, info: dict[str, str] | None
) -> ChargingResult:
    """The result of a request whose script answered ``answer`` (``info``: the
    account's fields it was rated with, for the currency)."""
    outcome = Outcome(answer.outcome)
    grants = answer.services
    cost = answer.cost
    if cost is None:
        cost = sum(grant.cost for grant in grants)
    message = None
    if outcome is Outcome.OUT_OF_ORDER:
        message = "CC-Request-Number is not newer than the session's last one"
    elif outcome is Outcome.UNKNOWN_SESSION:
        message = "no such session"
    elif outcome is Outcome.SERVICE_DENIED:
        message = "account is not active"
    return ChargingResult(
        outcome,
        grants,
        account_id=account,
        currency=(info or {}).get("currency") or None,
        balance=answer.balance,
        cost=cost,
        message=message,
    )


def price_enquiry_result(
    account: str | None,
    info: dict[str, str] | None,
    services: list[EventService],
    costs: list[int],
) -> ChargingResult:
    """The answer to a price enquiry (no script: nothing is written): each service
    rated, its cost in ``costs`` (same order), refused as its ``preset`` says."""
    assert info is not None
    if info["status"] != "active":
        return ChargingResult(
            Outcome.SERVICE_DENIED, account_id=account, currency=info["currency"] or None
        )
    grants = []
    total = 0
    for entry, cost in zip(services, costs, strict=True):
        if entry.preset is not None:
            outcome = Outcome(entry.preset)
        elif entry.zero_rated:
            outcome = Outcome.NOT_APPLICABLE
        else:
            outcome = Outcome.OK
        total += cost
        grants.append(
            ServiceGrant(
                rating_group=entry.rating_group,
                service_identifier=entry.service_identifier,
                outcome=outcome,
                unit=_UNITS.get(entry.unit) if entry.unit else None,
                granted=entry.units if outcome is Outcome.OK else 0,
                cost=cost,
            )
        )
    return ChargingResult(
        Outcome.OK,
        grants,
        account_id=account,
        currency=info["currency"] or None,
        cost=total,
    )
