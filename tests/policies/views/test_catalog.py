import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from policies import selectors
from policies.choices import LiveState, PolicyKind
from policies.constants import CATALOG_PAGE_SIZE
from policies.models import Policy
from tests.factories import EnvironmentFactory, NamespaceOwnershipFactory, make_policy


def catalog_url() -> str:
    return reverse("policies:catalog")


def listed(response) -> list[str]:
    return sorted(policy.name for policy in response.context["page"].object_list)


def authorization_policy(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": ["bookinfo"]}}]}]},
    }


@pytest.fixture
def catalog_org(org):
    """The org plus an AuthorizationPolicy, a production environment and a policy gone from its cluster."""
    prod = EnvironmentFactory(name="prod", order=20, is_production=True)
    NamespaceOwnershipFactory(environment=prod, namespace="bookinfo", team=org.team_a)
    make_policy(environment=prod, namespace="bookinfo", name="ratings")
    make_policy(
        environment=org.env,
        namespace="bookinfo",
        name="allow-frontend",
        kind=PolicyKind.AUTHORIZATION_POLICY,
        content=authorization_policy("allow-frontend", "bookinfo"),
    )
    gone = make_policy(environment=org.env, namespace="shop", name="legacy-cart")
    Policy.objects.filter(pk=gone.pk).update(live_state=LiveState.ABSENT)
    return org


def test_anonymous_is_sent_to_login(client, org):
    response = client.get(catalog_url())
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={catalog_url()}"


def test_user_in_no_team_sees_an_empty_catalog(client, org):
    client.force_login(org.outsider)
    response = client.get(catalog_url())
    assert response.status_code == 200
    assert listed(response) == []
    assert "No policies to show yet" in response.content.decode()


def test_author_sees_their_team_policies_and_not_another_team(client, org):
    client.force_login(org.author)
    response = client.get(catalog_url())
    body = response.content.decode()
    assert listed(response) == ["reviews"]
    assert reverse("policies:policy-detail", args=[org.policy_a.pk]) in body
    assert reverse("policies:policy-detail", args=[org.policy_b.pk]) not in body
    assert "payments" not in body


def test_security_team_member_sees_every_team(client, org):
    client.force_login(org.sec)
    response = client.get(catalog_url())
    assert listed(response) == ["payments", "reviews"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "AuthorizationPolicy"}, ["allow-frontend"]),
        (
            {"kind": ["AuthorizationPolicy", "VirtualService"], "namespace": "bookinfo", "environment": "staging"},
            ["allow-frontend", "reviews"],
        ),
        ({"namespace": "shop"}, ["legacy-cart", "payments"]),
        ({"team": "bookinfo"}, ["allow-frontend", "ratings", "reviews"]),
        ({"q": "PAY"}, ["payments"]),
        ({"environment": "prod"}, ["ratings"]),
        ({"live_state": "absent"}, ["legacy-cart"]),
        ({"q": "no-such-policy"}, []),
    ],
)
def test_filters_narrow_the_table(client, catalog_org, params, expected):
    client.force_login(catalog_org.sec)
    response = client.get(catalog_url(), params)
    assert response.status_code == 200
    assert listed(response) == expected


def test_filters_never_widen_visibility(client, catalog_org):
    client.force_login(catalog_org.author)
    response = client.get(catalog_url(), {"team": "shop"})
    assert listed(response) == []
    assert "No policies match these filters" in response.content.decode()


def test_security_kinds_are_marked_in_the_table(client, catalog_org):
    client.force_login(catalog_org.sec)
    body = client.get(catalog_url(), {"namespace": "bookinfo", "environment": "staging"}).content.decode()
    assert '<span class="badge mg-kind mg-kind-security" title="Security policy">AuthorizationPolicy</span>' in body
    assert '<span class="badge mg-kind">VirtualService</span>' in body


def test_counts_per_environment_cover_only_visible_policies(client, catalog_org):
    client.force_login(catalog_org.author)
    response = client.get(catalog_url())
    counts = {env.name: count for env, count in response.context["environment_counts"]}
    assert counts == {"staging": 2, "prod": 1}
    assert response.context["visible_total"] == 3


def test_htmx_request_gets_only_the_results_fragment(client, org):
    client.force_login(org.author)
    response = client.get(catalog_url(), {"q": "rev"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "policies/_catalog_results.html"
    assert "<html" not in body and "catalog-filters" not in body
    assert 'id="catalog-table"' in body and "reviews" in body
    assert "HX-Request" in response["Vary"]


def test_full_page_has_the_filter_form_that_works_without_javascript(client, org):
    client.force_login(org.author)
    body = client.get(catalog_url(), {"q": "rev"}).content.decode()
    assert "<html" in body
    assert f'<form id="catalog-filters" method="get" action="{catalog_url()}"' in body
    assert 'name="q" id="id_q" class="form-control form-control-sm" value="rev"' in body


def test_htmx_history_restore_gets_the_full_page(client, org):
    client.force_login(org.author)
    response = client.get(catalog_url(), headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in response.content.decode()


def test_invalid_filter_is_a_400_that_says_why(client, org):
    client.force_login(org.sec)
    response = client.get(catalog_url(), {"kind": "Bogus"})
    body = response.content.decode()
    assert response.status_code == 400
    assert "These filters are not valid" in body
    assert "Select a valid choice. Bogus is not one of the available choices." in body
    assert listed(response) == []


def test_pages_keep_the_filters(client, org):
    for number in range(CATALOG_PAGE_SIZE + 5):
        make_policy(environment=org.env, namespace="bookinfo", name=f"svc-{number:03d}")
    client.force_login(org.sec)
    first = client.get(catalog_url(), {"namespace": "bookinfo"})
    assert len(first.context["page"].object_list) == CATALOG_PAGE_SIZE
    assert "?namespace=bookinfo&amp;page=2" in first.content.decode()
    second = client.get(catalog_url(), {"namespace": "bookinfo", "page": 2})
    assert len(second.context["page"].object_list) == 6  # 55 new ones and "reviews"
    assert "payments" not in listed(second)


def test_query_count_does_not_grow_with_rows(client, org, django_assert_max_num_queries):
    client.force_login(org.sec)
    client.get(catalog_url())  # warm the session
    with CaptureQueriesContext(connection) as few:
        client.get(catalog_url())
    for number in range(60):
        make_policy(environment=org.env, namespace="bookinfo" if number % 2 else "shop", name=f"svc-{number:02d}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(catalog_url())
    assert len(response.context["page"].object_list) == CATALOG_PAGE_SIZE
    # the page's primary keys, then its rows (selectors.page_pk_first); one more for the navigation's
    # service-account link (selectors.user_manages_service_accounts)
    assert len(few.captured_queries) <= 12


def test_drifted_policies_are_marked_and_filtered_without_extra_queries(client, org, django_assert_max_num_queries):
    from policies.models import PolicyDrift

    client.force_login(org.sec)
    client.get(catalog_url())  # warm the session
    with CaptureQueriesContext(connection) as few:
        client.get(catalog_url())
    drifted = [make_policy(environment=org.env, namespace="bookinfo", name=f"drifted-{n}") for n in range(5)]
    for number in range(10):
        make_policy(environment=org.env, namespace="shop", name=f"calm-{number}")
    for policy in drifted:
        PolicyDrift.objects.create(policy=policy, live_content=None)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(catalog_url())
    body = response.content.decode()
    for policy in drifted:
        assert f'href="{reverse("policies:policy-detail", args=[policy.pk])}#drift-panel"' in body
    assert body.count("mg-drift-badge") == 5
    assert 'name="drifted" value="true"' in body  # the filter
    only = client.get(catalog_url(), {"drifted": "true"}, HTTP_HX_REQUEST="true")
    assert listed(only) == sorted(policy.name for policy in drifted)
    assert "<html" not in only.content.decode() and only.content.decode().count("mg-drift-badge") == 5
    assert "drifted-0" not in listed(client.get(catalog_url(), {"drifted": "false"}))
    api = client.get("/api/v1/policies/", {"drifted": "true"}).json()  # the same filter in the API
    assert sorted(item["name"] for item in api["results"]) == sorted(policy.name for policy in drifted)


def test_pages_follow_the_default_order_across_environments(org):
    """Pages read environment by environment (the index's order within one, from the nearer end);
    stitched together they are the catalog in its default order: environments by promotion order,
    then name (so those of the same order do not interleave), then namespace, kind, name."""
    twin = EnvironmentFactory(name="staging-b", order=org.env.order)
    last = EnvironmentFactory(name="zz-last", order=org.env.order + 100)
    for environment in (twin, last):
        for number in range(7):
            make_policy(environment=environment, namespace=f"ns-{number % 3}", name=f"p-{number}")
    visible = selectors.policy_list(user=org.sec)
    expected = list(visible.values_list("pk", flat=True).order_by(*Policy._meta.ordering))
    assert len(expected) > 14
    names = [Policy.objects.get(pk=pk).environment.name for pk in expected]
    assert names.index("staging-b") > max(i for i, name in enumerate(names) if name == org.env.name)
    stitched: list[int] = []
    number = 1
    while True:
        page = selectors.page_pk_first(visible, number, 4)
        stitched += [policy.pk for policy in page.object_list]
        if not page.has_next():
            break
        number += 1
    assert stitched == expected
    assert page.paginator.count == len(expected)
