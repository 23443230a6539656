import pytest

from policies.validation.codes import CATALOGUE


@pytest.mark.django_db
def test_every_code_has_a_page_that_explains_it(client, org):
    client.force_login(org.author)
    index = client.get("/docs/findings/").content.decode()
    for code, entry in CATALOGUE.items():
        assert f"/docs/findings/{code}/" in index
    page = client.get("/docs/findings/MG0203/")
    assert page.status_code == 200
    body = page.content.decode()
    assert CATALOGUE["MG0203"].title in body and "How to fix it" in body


@pytest.mark.django_db
def test_unknown_code_is_404_and_pages_are_public(client, org):
    """CI logs and SARIF reports link here: the pages need no login."""
    assert client.get("/docs/findings/MG0203/").status_code == 200
    assert client.get("/docs/findings/NOPE/").status_code == 404


@pytest.mark.django_db
def test_a_code_with_an_istio_equivalent_names_it(client, org):
    client.force_login(org.author)
    body = client.get("/docs/findings/MG0309/").content.decode()
    assert "istioctl analyze: " in body and "IST0109 ConflictingMeshGatewayVirtualServiceHosts" in body
    assert "istioctl analyze:" not in client.get("/docs/findings/MG0306/").content.decode()
    assert "IST0130 VirtualServiceUnreachableRule" in client.get("/docs/findings/").content.decode()


def test_every_istio_code_named_is_in_istios_catalogue():
    import yaml

    from tests.policies.validation.helpers import ISTIO_REFERENCE

    messages = yaml.safe_load((ISTIO_REFERENCE / "analysis-messages.yaml").read_text())["messages"]
    names = {message["code"]: message["name"] for message in messages}
    for entry in CATALOGUE.values():
        if entry.istio:
            assert names[entry.istio] == entry.istio_name, entry.code
            assert entry.istio in entry.reference, entry.code
        assert "istioctl" not in entry.reference or "-like" not in entry.reference, entry.code
