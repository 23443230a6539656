"""API for a team's members: a team's admins (and platform admins) add people, change their roles
and remove them, as on the team's page (`policies.services.teams`).

- `GET /teams/{slug}/members/`: the members with their roles; `POST` `{username, role}` adds a
  person or changes a member's role.
- `PATCH /teams/{slug}/members/{username}/` `{role}`; `DELETE` removes the member.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policies import selectors
from policies.choices import Role
from policies.models import Membership, Team
from policies.services import teams as services
from portal.http import signed_in_user


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "source"]
        read_only_fields = fields


class MemberSaveSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.AUTHOR)


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


def _team(request: Request, slug: str) -> Team:
    return get_object_or_404(selectors.team_list(user=request.user), slug=slug)


def _member(team: Team, username: str) -> Membership:
    if "\x00" in username:  # no user has one (and PostgreSQL text refuses it)
        raise Http404
    return get_object_or_404(Membership.objects.select_related("user"), team=team, user__username=username)


class TeamMembersView(APIView):
    @extend_schema(responses={status.HTTP_200_OK: MemberSerializer(many=True)})
    def get(self, request: Request, slug: str) -> Response:
        team = _team(request, slug)
        return Response(MemberSerializer(team.memberships.all(), many=True).data)

    @extend_schema(request=MemberSaveSerializer, responses={status.HTTP_200_OK: MemberSerializer})
    def post(self, request: Request, slug: str) -> Response:
        team = _team(request, slug)
        params = MemberSaveSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        membership = services.team_member_save(actor=signed_in_user(request), team=team, **params.validated_data)
        return Response(MemberSerializer(membership).data)


class TeamMemberView(APIView):
    @extend_schema(responses={status.HTTP_200_OK: MemberSerializer})
    def get(self, request: Request, slug: str, username: str) -> Response:
        return Response(MemberSerializer(_member(_team(request, slug), username)).data)

    @extend_schema(request=MemberRoleSerializer, responses={status.HTTP_200_OK: MemberSerializer})
    def patch(self, request: Request, slug: str, username: str) -> Response:
        team = _team(request, slug)
        params = MemberRoleSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        services.require_member_manager(signed_in_user(request), team)  # before saying who is a member
        _member(team, username)
        membership = services.team_member_save(
            actor=signed_in_user(request), team=team, username=username, role=params.validated_data["role"]
        )
        return Response(MemberSerializer(membership).data)

    @extend_schema(responses={status.HTTP_204_NO_CONTENT: None})
    def delete(self, request: Request, slug: str, username: str) -> Response:
        team = _team(request, slug)
        services.require_member_manager(signed_in_user(request), team)
        _member(team, username)
        services.team_member_remove(actor=signed_in_user(request), team=team, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)
