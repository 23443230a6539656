"""Read-only API over environments, teams, policies and revisions.

Every queryset comes from a selector, so the visibility rules of `policies.selectors` hold here
exactly as in the UI: another team's policy is absent from lists and answers 404.
"""

from collections.abc import Callable
from typing import Any

from django.db.models import F, QuerySet
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView
from rest_framework.viewsets import ReadOnlyModelViewSet

from policies.api import serializers
from policies.filtersets import PolicyFilterSet
from policies.models import PolicyRevision
from policies.selectors import environment_list, policy_list, policy_pks, policy_revisions, rows_for_pks, team_list
from portal.pagination import BoundedLimitOffsetPagination


class PkFirstPagination(BoundedLimitOffsetPagination):
    """LIMIT/OFFSET over the primary keys alone, then the page's rows with their annotations
    (see `selectors.page_pk_first`): any offset costs what the first page does."""

    def paginate_queryset(  # type: ignore[override]
        self,
        queryset: QuerySet,
        request: Request,
        view: APIView | None = None,
    ) -> list | None:
        pks = super().paginate_queryset(policy_pks(queryset), request, view)  # type: ignore[arg-type]
        return None if pks is None else rows_for_pks(queryset, list(pks))


class SelectorViewSet(ReadOnlyModelViewSet):
    """Lists and retrieves what `selector(user=...)` lets the caller see."""

    selector: Callable[..., QuerySet]  # set with staticmethod(...) in subclasses

    def get_queryset(self) -> QuerySet:
        return self.selector(user=self.request.user)


class EnvironmentViewSet(SelectorViewSet):
    """Target clusters, their reachability and last import. Credentials are never shown."""

    selector = staticmethod(environment_list)
    serializer_class = serializers.EnvironmentSerializer
    lookup_field = "name"


class TeamViewSet(SelectorViewSet):
    """Teams, their members with roles, and the namespaces they own in each environment."""

    selector = staticmethod(team_list)
    serializer_class = serializers.TeamSerializer
    lookup_field = "slug"


class PolicyViewSet(SelectorViewSet):
    """Istio objects in namespaces your teams own (all of them for security-team members).
    A policy of another team is absent from the list and answers 404."""

    lookup_value_regex = "[0-9]+"  # any other id is a 404, never a 500

    selector = staticmethod(policy_list)
    filterset_class = PolicyFilterSet
    pagination_class = PkFirstPagination

    def get_queryset(self) -> QuerySet:
        policies = super().get_queryset().select_related("current_revision__author", "drift")
        # Lists show the revision's summary only; its content can be large.
        return policies.defer("current_revision__content") if self.action == "list" else policies

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return serializers.PolicyDetailSerializer if self.action == "retrieve" else serializers.PolicySerializer


class PolicyRevisionViewSet(ReadOnlyModelViewSet):
    """The revisions of one policy you may read, newest first; the detail includes the content."""

    lookup_field = "number"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[PolicyRevision]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no policy in the URL
            return PolicyRevision.objects.none()
        policy = get_object_or_404(policy_list(user=self.request.user), pk=self.kwargs["policy_id"])
        revisions = policy_revisions(policy=policy).annotate(parent_number=F("parent__number"))
        return revisions.defer("content") if self.action == "list" else revisions

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return serializers.RevisionDetailSerializer if self.action == "retrieve" else serializers.RevisionSerializer
