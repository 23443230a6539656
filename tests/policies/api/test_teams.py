from django.urls import reverse

from policies.choices import Role
from tests.api_testing import EndpointContract, assert_error, results, session_client
from tests.factories import EnvironmentFactory, MembershipFactory, NamespaceOwnershipFactory, TeamFactory, UserFactory


class TestTeamList(EndpointContract):
    def url(self, org):
        return reverse("api:team-list")

    def check_response(self, response, org):
        assert [team["slug"] for team in results(response)] == ["bookinfo", "security", "shop"]


class TestTeamDetail(EndpointContract):
    def url(self, org):
        return reverse("api:team-detail", kwargs={"slug": "bookinfo"})

    def check_response(self, response, org):
        body = response.json()
        assert body["slug"] == "bookinfo"
        assert body["is_security"] is False
        assert sorted(body["members"], key=lambda m: m["username"]) == [
            {"username": "alice", "role": Role.AUTHOR},
            {"username": "bob", "role": Role.APPROVER},
        ]
        assert body["namespaces"] == [{"environment": "staging", "namespace": "bookinfo"}]


def test_namespaces_are_listed_per_environment(org):
    prod = EnvironmentFactory(name="prod", order=20)
    NamespaceOwnershipFactory(environment=prod, namespace="bookinfo", team=org.team_a)
    body = session_client(org.other).get(reverse("api:team-detail", kwargs={"slug": "bookinfo"})).json()
    assert body["namespaces"] == [
        {"environment": "staging", "namespace": "bookinfo"},
        {"environment": "prod", "namespace": "bookinfo"},
    ]


def test_unknown_team_is_not_found(org):
    response = session_client(org.author).get(reverse("api:team-detail", kwargs={"slug": "ghosts"}))
    assert_error(response, 404, code="not_found")


def test_team_list_queries_do_not_grow_with_teams(org, django_assert_max_num_queries):
    for i in range(20):
        team = TeamFactory(slug=f"team-{i}")
        NamespaceOwnershipFactory(environment=org.env, namespace=f"ns-{i}", team=team)
        for j in range(3):
            MembershipFactory(team=team, user=UserFactory(username=f"user-{i}-{j}"))
    client = session_client(org.author)
    # session, user, count, teams, then one each for members, namespaces and their environments
    with django_assert_max_num_queries(7):
        items = results(client.get(reverse("api:team-list"), {"limit": 100}))
    assert len(items) == 23
    assert all(len(item["members"]) == 3 for item in items if item["slug"].startswith("team-"))
