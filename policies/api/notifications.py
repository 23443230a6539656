"""API for notification channels, for people and service accounts (a pipeline subscribes its own
webhook to the events it waits for).

- `/channels/`: list (your own and your teams'), create (for yourself, or for a team you
  administer), retrieve, DELETE. A webhook's HMAC secret is in the creation answer only.
- `POST /channels/{id}/test/`: queue a test message (answers the delivery); `GET
  /channels/{id}/deliveries/`: the channel's latest deliveries, newest first.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from policies.choices import NotificationChannelKind, NotificationEvent
from policies.models import NotificationChannel, NotificationDelivery, Team
from policies.services import notifications as services
from portal.http import signed_in_user

DELIVERIES_SHOWN = 50


class ChannelSerializer(serializers.ModelSerializer):
    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )
    user = serializers.CharField(source="user.username", read_only=True, allow_null=True, default=None)
    target = serializers.CharField(source="masked_target", read_only=True)
    events = serializers.ListField(child=serializers.ChoiceField(choices=NotificationEvent.choices), read_only=True)

    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "team", "user", "target", "events", "enabled", "created_at"]
        read_only_fields = fields


class ChannelCreatedSerializer(ChannelSerializer):
    secret = serializers.CharField(read_only=True, help_text="The webhook's HMAC key: shown in this answer only.")

    class Meta(ChannelSerializer.Meta):
        fields = [*ChannelSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class ChannelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=NotificationChannelKind.choices)
    target = serializers.CharField(max_length=500, help_text="An email address, or the webhook / Slack URL.")
    team = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Team.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="A team you administer; empty: a channel of your own.",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=NotificationEvent.choices),
        required=False,
        default=list,
        help_text="Events it receives; empty: all.",
    )
    secret = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text="Webhook HMAC key; empty: one is generated.",
    )
    enabled = serializers.BooleanField(required=False, default=True)


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = NotificationDelivery
        fields = [
            "uuid",
            "event",
            "subject",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class ChannelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, GenericViewSet):
    lookup_value_regex = "[0-9]+"  # any other id is a 404, never a 500
    serializer_class = ChannelSerializer

    def get_queryset(self) -> QuerySet[NotificationChannel]:
        return services.channel_visible_list(user=self.request.user).order_by("pk")

    @extend_schema(request=ChannelCreateSerializer, responses={status.HTTP_201_CREATED: ChannelCreatedSerializer})
    def create(self, request: Request) -> Response:
        params = ChannelCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        values: dict[str, Any] = dict(params.validated_data)
        team = values.pop("team")
        owner: dict[str, Any] = {"team": team} if team is not None else {"user": request.user}
        channel = services.channel_create(actor=signed_in_user(request), **owner, **values)
        return Response(ChannelCreatedSerializer(channel).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: NotificationChannel) -> None:
        services.channel_delete(actor=signed_in_user(self.request), channel=instance)

    @extend_schema(request=None, responses={status.HTTP_202_ACCEPTED: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        delivery = services.notification_send_test(actor=signed_in_user(request), channel=self.get_object())
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={status.HTTP_200_OK: DeliverySerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None)
    def deliveries(self, request: Request, pk: str) -> Response:
        channel = self.get_object()
        latest = channel.deliveries.order_by("-created_at", "-pk")[:DELIVERIES_SHOWN]
        return Response(DeliverySerializer(latest, many=True).data)
