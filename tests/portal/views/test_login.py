from django.urls import reverse


def test_login_page_signs_in_and_lands_on_the_dashboard(client, org):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert 'autocomplete="current-password"' in page.content.decode()
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-for-tests"})
    assert response.status_code == 302
    assert response["Location"] == reverse("policies:home")


def test_wrong_password_shows_an_error(client, org):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post_form(client, org):
    client.force_login(org.author)
    body = client.get(reverse("policies:catalog")).content.decode()
    assert f'<form method="post" action="{reverse("logout")}">' in body
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("policies:catalog")).status_code == 302


def test_admin_link_only_for_staff(client, org):
    client.force_login(org.author)
    assert reverse("admin:index") not in client.get(reverse("policies:catalog")).content.decode()
    org.author.is_staff = True
    org.author.save()
    assert reverse("admin:index") in client.get(reverse("policies:catalog")).content.decode()
