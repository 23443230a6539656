"""Output shapes of the read API. Serializers render; they hold no rules."""

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from policies.choices import LiveState
from policies.models import Environment, Membership, NamespaceOwnership, Policy, PolicyDrift, PolicyRevision, Team

USERNAME: dict[str, Any] = {"slug_field": "username", "read_only": True, "allow_null": True}


class EnvironmentSerializer(serializers.ModelSerializer):
    """A target cluster as callers see it: never its credentials."""

    url = serializers.HyperlinkedIdentityField(view_name="api:environment-detail", lookup_field="name")
    # Plain strings: "" when not configured (a `format: uri` would not admit the empty string).
    api_url = serializers.CharField(read_only=True, allow_blank=True, help_text="Kubernetes API server URL, or empty.")
    prometheus_url = serializers.CharField(read_only=True, allow_blank=True, help_text="Prometheus URL, or empty.")

    class Meta:
        model = Environment
        fields = [
            "url",
            "name",
            "display_name",
            "order",
            "is_production",
            "api_url",
            "prometheus_url",
            "cluster_reachable",
            "cluster_version",
            "cluster_error",
            "cluster_checked_at",
            "last_import_at",
            "foreign_controllers",
            "promotion_overrides",
        ]
        read_only_fields = fields


class TeamMemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role"]
        read_only_fields = fields


class OwnedNamespaceSerializer(serializers.ModelSerializer):
    environment: serializers.SlugRelatedField[Environment] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )

    class Meta:
        model = NamespaceOwnership
        fields = ["environment", "namespace"]
        read_only_fields = fields


class TeamSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:team-detail", lookup_field="slug")
    members = TeamMemberSerializer(source="memberships", many=True, read_only=True)
    namespaces = OwnedNamespaceSerializer(many=True, read_only=True)

    class Meta:
        model = Team
        fields = ["url", "slug", "name", "description", "is_security", "members", "namespaces"]
        read_only_fields = fields


class RevisionSummarySerializer(serializers.ModelSerializer):
    author: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(**USERNAME)

    class Meta:
        model = PolicyRevision
        fields = ["number", "content_hash", "created_at", "source", "author"]
        read_only_fields = fields


class DriftSummarySerializer(serializers.ModelSerializer):
    """The live object differs from the last revision Meshgate applied (see `…/drift/`)."""

    live_state = serializers.SerializerMethodField(help_text="present, or absent when the live object is gone.")

    class Meta:
        model = PolicyDrift
        fields = ["detected_at", "live_state", "live_resource_version"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=LiveState.choices))
    def get_live_state(self, drift: PolicyDrift) -> str:
        return LiveState.PRESENT if drift.live_content is not None else LiveState.ABSENT


class PolicySerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:policy-detail")
    environment: serializers.SlugRelatedField[Environment] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )
    owner_team = serializers.CharField(
        source="owner_team_slug", read_only=True, allow_null=True, help_text="Slug of the team owning the namespace."
    )
    current_revision = RevisionSummarySerializer(read_only=True, allow_null=True)
    drift = DriftSummarySerializer(
        read_only=True,
        allow_null=True,
        help_text="Set while the live object differs from the last revision Meshgate rolled out; null otherwise.",
    )

    class Meta:
        model = Policy
        fields = [
            "id",
            "url",
            "environment",
            "kind",
            "namespace",
            "name",
            "owner_team",
            "live_state",
            "live_resource_version",
            "live_seen_at",
            "current_revision",
            "drift",
        ]
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.OBJECT)
class ContentField(serializers.JSONField):
    """A normalized Istio object (apiVersion, kind, metadata, spec)."""


class PolicyDetailSerializer(PolicySerializer):
    content = ContentField(
        source="current_revision.content",
        read_only=True,
        allow_null=True,
        help_text="The current revision's normalized object; null when the policy has no revision.",
    )

    class Meta(PolicySerializer.Meta):
        fields = [*PolicySerializer.Meta.fields, "content"]
        read_only_fields = fields


class RevisionSerializer(serializers.ModelSerializer):
    parent = serializers.IntegerField(  # type: ignore[assignment]  # a declared field, not Field.parent
        source="parent_number", read_only=True, allow_null=True, help_text="Number of the revision this one follows."
    )
    author: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(**USERNAME)

    class Meta:
        model = PolicyRevision
        fields = ["number", "content_hash", "parent", "author", "source", "message", "created_at"]
        read_only_fields = fields


class RevisionDetailSerializer(RevisionSerializer):
    content = ContentField(read_only=True)

    class Meta(RevisionSerializer.Meta):
        fields = ["number", "content", "content_hash", "parent", "author", "source", "message", "created_at"]
        read_only_fields = fields
