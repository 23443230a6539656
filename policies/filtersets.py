import django_filters
from django.db.models import Q, QuerySet

from policies.choices import LiveState, PolicyKind
from policies.models import Policy


class PolicyFilterSet(django_filters.FilterSet):
    """Catalog filters, shared by the UI and the API."""

    q = django_filters.CharFilter(method="search", label="Search")
    environment = django_filters.CharFilter(field_name="environment__name")
    kind = django_filters.MultipleChoiceFilter(choices=PolicyKind.choices)
    namespace = django_filters.CharFilter()
    team = django_filters.CharFilter(field_name="owner_team_slug", label="Team")
    live_state = django_filters.ChoiceFilter(choices=LiveState.choices)
    drifted = django_filters.BooleanFilter(
        method="filter_drifted",
        label="Drifted only",
        help_text="true: only policies whose live object differs from what Meshgate applied; false: the others.",
    )

    class Meta:
        model = Policy
        fields = ["q", "environment", "kind", "namespace", "team", "live_state", "drifted"]

    def filter_drifted(self, queryset: QuerySet[Policy], name: str, value: bool | None) -> QuerySet[Policy]:
        if value is None:
            return queryset
        return queryset.filter(drift__isnull=not value)

    def search(self, queryset: QuerySet[Policy], name: str, value: str) -> QuerySet[Policy]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(namespace__icontains=value) | Q(kind__icontains=value))
