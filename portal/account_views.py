"""The user's own API tokens: list, create (the secret is shown once), revoke."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from policies.exceptions import ApplicationError
from portal import services
from portal.forms import TokenCreateForm
from portal.http import signed_in_user
from portal.models import TOKEN_PREFIX, ApiToken
from portal.selectors import token_list


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST if request.method == "POST" else None)
    created: ApiToken | None = None
    plaintext = ""
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                created, plaintext = services.token_create(user=signed_in_user(request), **form.cleaned_data)
            except ApplicationError as exc:
                form.add_application_error(exc)
        if created is None:
            status = 400
        else:
            form = TokenCreateForm()
    # The plaintext travels only in this response: it is in no session, message or row.
    context = {
        "form": form,
        "tokens": token_list(user=signed_in_user(request)),
        "created": created,
        "plaintext": plaintext,
        "token_prefix": TOKEN_PREFIX,
    }
    return render(request, "account/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(token_list(user=signed_in_user(request)), pk=pk)
    services.token_revoke(token=token, actor=signed_in_user(request))
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("account:tokens")
