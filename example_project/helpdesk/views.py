from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import Ticket


def _ticket(request: HttpRequest, pk: int) -> Ticket:
    ticket = get_object_or_404(Ticket, pk=pk)
    if not ticket.visible_to(request.user):
        raise Http404("No such ticket.")  # not 403: do not confirm it exists
    return ticket


def _tickets(request: HttpRequest) -> tuple[QuerySet[Ticket], str]:
    """The tickets ``request.user`` may see, and the channel that announces their changes."""
    user = request.user
    tickets = Ticket.objects.select_related("customer")
    if user.is_staff:
        return tickets, "tickets"
    return tickets.filter(customer=user), f"customer:{user.pk}"


@login_required
def ticket_list(request: HttpRequest) -> HttpResponse:
    """A customer's tickets (every ticket for staff), updated live."""
    tickets, channel = _tickets(request)
    return render(request, "helpdesk/list.html", {"tickets": tickets, "channel": channel})


@login_required
def ticket_rows(request: HttpRequest) -> HttpResponse:
    """The list's rows alone, refetched on a ``helpdesk.ticket.refresh`` event."""
    tickets, _ = _tickets(request)
    return render(request, "helpdesk/_rows.html", {"tickets": tickets})


@login_required
def ticket_detail(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = _ticket(request, pk)
    return render(request, "helpdesk/detail.html", {"ticket": ticket, "channel": f"ticket:{pk}"})


def _htmx_page(request: HttpRequest, pk: int, template: str) -> HttpResponse:
    ticket = _ticket(request, pk)
    tickets, list_channel = _tickets(request)
    context = {
        "ticket": ticket,
        "tickets": tickets,
        "channel": f"ticket:{pk}",
        "list_channel": list_channel,
    }
    return render(request, template, context)


@login_required
def ticket_htmx(request: HttpRequest, pk: int) -> HttpResponse:
    """The same ticket through htmx's SSE extension: the server renders the
    fragment; the list below refetches its rows on a refresh event."""
    return _htmx_page(request, pk, "helpdesk/htmx.html")


@login_required
def ticket_htmx4(request: HttpRequest, pk: int) -> HttpResponse:
    """The same page through htmx 4's hx-sse extension."""
    return _htmx_page(request, pk, "helpdesk/htmx4.html")
