"""The wizard pages: pre-filled from the live cluster, previews over htmx, and the hand-off to the editor."""

from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from django.urls import reverse

from policies.wizards import WIZARDS
from tests.policies.editor.test_wizards import VALID_INPUT


def _url(slug, environment="staging"):
    return f"{reverse('editor:wizard', args=[slug])}?environment={environment}"


def test_index_lists_every_wizard(client, staging, org):
    client.force_login(org.author)
    response = client.get(reverse("editor:wizards"))
    assert response.status_code == 200
    body = response.content.decode()
    for wizard in WIZARDS.values():
        assert f'href="/editor/wizards/{wizard.slug}/?environment=staging"' in body


@pytest.mark.parametrize("slug", sorted(WIZARDS))
def test_wizard_form_page(client, staging, org, slug):
    client.force_login(org.author)
    response = client.get(_url(slug))
    assert response.status_code == 200
    assert 'id="wizard-preview"' in response.content.decode()


def test_services_come_from_the_users_namespaces_only(client, staging, org):
    client.force_login(org.author)
    form = client.get(_url("traffic-shift")).context["form"]
    values = [value for _group, options in form.fields["service"].choices[1:] for value, _label in options]
    assert values == ["bookinfo/details", "bookinfo/productpage", "bookinfo/ratings", "bookinfo/reviews"]


def test_traffic_shift_form_reloads_weights_for_the_chosen_service(client, staging, org):
    client.force_login(org.author)
    response = client.get(_url("traffic-shift") + "&service=bookinfo/reviews", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="wizard-form-body"')
    assert response["HX-Trigger-After-Settle"] == "wizard-refreshed"
    for subset, weight in (("v1", 90), ("v2", 10), ("v3", 0)):
        assert f'name="weight_{subset}" value="{weight}"' in body


@pytest.mark.parametrize("slug", sorted(WIZARDS))
def test_valid_input_opens_the_editor_with_the_yaml(client, staging, org, slug):
    client.force_login(org.author)
    response = client.post(_url(slug), VALID_INPUT[slug])
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert target.path == reverse("editor:new")
    query = parse_qs(target.query)
    assert query["environment"] == ["staging"] and query["namespace"] == ["bookinfo"]
    assert query["kind"] == [WIZARDS[slug].kind]
    editor = client.get(response["Location"])
    assert editor.status_code == 200
    documents = list(yaml.safe_load_all(editor.context["text"]))
    assert documents[0]["kind"] == WIZARDS[slug].kind
    assert editor.context["wizard"] == WIZARDS[slug]
    assert editor.context["save_as"] == ("bundle" if len(documents) > 1 else "draft")


def test_bad_weights_are_a_form_error(client, staging, org):
    client.force_login(org.author)
    data = {**VALID_INPUT["traffic-shift"], "weight_v1": "60", "weight_v2": "30"}
    response = client.post(_url("traffic-shift"), data)
    assert response.status_code == 400
    assert "The weights must add up to 100 (they add up to 90)." in response.content.decode()


def test_bad_input_shows_errors_on_the_fields(client, staging, org):
    client.force_login(org.author)
    response = client.post(_url("timeouts-retries"), {**VALID_INPUT["timeouts-retries"], "timeout": "soon"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "mg-field mg-field-invalid" in body
    assert "Use a number and a unit" in body


def test_preview_renders_yaml_or_problems_and_is_never_an_error(client, staging, org):
    client.force_login(org.author)
    ok = client.post(_url("traffic-shift"), {**VALID_INPUT["traffic-shift"], "preview": "1"}, HTTP_HX_REQUEST="true")
    assert ok.status_code == 200
    assert "weight: 50" in ok.content.decode()
    assert "mg-split" in ok.content.decode()
    bad = client.post(
        _url("traffic-shift"),
        {**VALID_INPUT["traffic-shift"], "weight_v1": "60", "weight_v2": "30", "preview": "1"},
        HTTP_HX_REQUEST="true",
    )
    assert bad.status_code == 200
    assert "add up to 90" in bad.content.decode()


def test_the_jwt_wizard_saves_one_draft_per_object(client, staging, org):
    client.force_login(org.author)
    editor_url = client.post(_url("jwt"), VALID_INPUT["jwt"])["Location"]
    editor = client.get(editor_url)
    response = client.post(editor_url, {"text": editor.context["text"], "save_as": "bundle", "message": "jwt"})
    assert response.status_code == 302
    assert response["Location"] == reverse("policies:drafts")
    assert sorted(d.kind for d in org.author.drafts.all()) == ["AuthorizationPolicy", "RequestAuthentication"]


def test_user_without_an_owned_namespace_cannot_use_wizards(client, staging, org):
    client.force_login(org.outsider)
    assert client.get(_url("traffic-shift")).status_code == 403
    assert client.post(_url("traffic-shift"), VALID_INPUT["traffic-shift"]).status_code == 403


def test_another_teams_service_is_refused(client, staging, org):
    client.force_login(org.author)
    response = client.post(_url("mtls"), {"scope": "shop/payments", "mode": "STRICT"})
    assert response.status_code == 400


def test_unknown_wizard_or_environment_is_not_found(client, staging, org):
    client.force_login(org.author)
    assert client.get(_url("nope")).status_code == 404
    assert client.get(_url("traffic-shift", environment="nowhere")).status_code == 404


def test_wizards_work_when_the_cluster_does_not_answer(client, org):
    client.force_login(org.author)  # org.env points at a closed port: no live services
    page = client.get(_url("mtls"))
    assert page.status_code == 200
    assert "did not answer" in page.content.decode()
    response = client.post(
        _url("access"),
        {
            "service": "bookinfo/reviews",
            "action": "DENY",
            "namespaces": ["bookinfo"],
        },
    )
    assert response.status_code == 302
