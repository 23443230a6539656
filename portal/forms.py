"""Forms for the account pages. They parse input; the rules live in `portal.services`."""

from typing import Any

from django import forms
from django.conf import settings

from policies.exceptions import ApplicationError
from portal.choices import TokenScope

DEFAULT_TOKEN_DAYS = 90


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "e.g. ci-staging-deploy"}))
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices, widget=forms.CheckboxSelectMultiple, initial=[TokenScope.READ]
    )
    # The range is the service's rule (token_create); the widget only hints it to the browser.
    expires_in_days = forms.IntegerField(label="Expires in (days)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = settings.MESHGATE_API_TOKEN_MAX_DAYS
        field = self.fields["expires_in_days"]
        field.initial = min(DEFAULT_TOKEN_DAYS, limit)
        field.help_text = f"Between 1 and {limit} days."
        field.widget.attrs.update(min=1, max=limit)

    def add_application_error(self, error: ApplicationError) -> None:
        """Shows a service's error on the field it names, or above the form."""
        field = error.extra.get("field")
        self.add_error(field if field in self.fields else None, error.message)
