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
