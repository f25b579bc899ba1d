"""Channels and model hooks of the helpdesk; autodiscovered by django_sse.

- ``ticket:<pk>``: one ticket, for its customer and staff, with presence;
- ``customer:<pk>``: every ticket of one customer, for the ticket list;
- ``tickets``: every ticket, for staff.

A staff member saving a ticket (in the admin or anywhere else) sends
``helpdesk.ticket.updated`` with the fields below on commit, and a rendered
status fragment (event ``ticket.fragment``) for the htmx page. A burst of
changes (a bulk edit in the admin) also sends one debounced
``helpdesk.ticket.refresh`` per list channel, on which the list refetches its rows.
"""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from django_sse import channels, hooks

from .models import Ticket

FRAGMENT_EVENT = "ticket.fragment"
FIELDS = ["title", "status", "reply", "updated_at"]


# A presence channel: the ticket page lists who else is viewing it.
@channels.register("ticket:{pk}", presence=True)
def can_read_ticket(user: Any, pk: str) -> bool:
    ticket = Ticket.objects.filter(pk=pk).first()
    return ticket is not None and ticket.visible_to(user)


@channels.register("customer:{pk}")
def can_read_customer(user: Any, pk: str) -> bool:
    return bool(user.is_authenticated and (user.is_staff or str(user.pk) == pk))


channels.register("tickets", channels.STAFF)


def ticket_payload(ticket: Ticket, action: str) -> dict[str, Any]:
    data = {name: getattr(ticket, name) for name in FIELDS}
    data["status_label"] = ticket.get_status_display()
    return data


hooks.register(
    Ticket, channels=["ticket:{pk}", "customer:{customer_id}", "tickets"], payload=ticket_payload
)


def status_fragment(ticket: Ticket, action: str) -> str:
    # A str is sent verbatim: htmx swaps it in as it is.
    return render_to_string("helpdesk/_status.html", {"ticket": ticket})


hooks.register(
    Ticket,
    channels="ticket:{pk}",
    actions=("updated",),
    payload=status_fragment,
    event=FRAGMENT_EVENT,
)


# One debounced event per channel for any number of saves (SSE_REFRESH_DEBOUNCE):
# the ticket lists refetch their rows once, however many tickets changed.
hooks.register(Ticket, channels=["customer:{customer_id}", "tickets"], refresh=True)
