import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from policies.choices import DraftOperation
from policies.models import Draft
from policies.services.drafts import draft_delete_policy, draft_save
from tests.factories import EnvironmentFactory
from tests.policies.drafts.helpers import (
    RATINGS_NEW,
    REVIEWS_MISSING_SUBSET,
    REVIEWS_V2,
    cluster_org,  # noqa: F401 - fixture
    stored_nothing,
    tar_gz,
)

DRAFTS = "/drafts/"
UPLOAD = "/drafts/upload/"


def test_urls_are_named():
    assert reverse("policies:drafts") == DRAFTS
    assert reverse("policies:draft-upload") == UPLOAD
    assert reverse("policies:draft-detail", args=[7]) == "/drafts/7/"


@pytest.mark.parametrize("url", [DRAFTS, UPLOAD, "/drafts/1/"])
def test_anonymous_is_sent_to_login(client, org, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_nav_links_to_drafts(client, org):
    client.force_login(org.author)
    body = client.get(reverse("policies:catalog")).content.decode()
    assert f'href="{DRAFTS}">Drafts</a>' in body


# --- list -------------------------------------------------------------------------------------


def test_list_shows_own_drafts_grouped_by_environment_with_counts(client, cluster_org):
    org = cluster_org
    draft_save(author=org.author, environment=org.env, text=REVIEWS_MISSING_SUBSET, message="try v9")
    client.force_login(org.author)

    response = client.get(DRAFTS)
    body = response.content.decode()
    assert response.status_code == 200
    assert "bookinfo/reviews" in body and "try v9" in body
    assert re.search(r">\s*1 error\s*<", body)
    assert 'mg-state-info">Update<' in body


@pytest.fixture
def two_environments(cluster_org):
    """alice's drafts in staging and in prod (where team Bookinfo owns bookinfo too); bob's draft."""
    from tests.factories import NamespaceOwnershipFactory

    org = cluster_org
    prod = EnvironmentFactory(name="prod", order=20, api_url=org.env.api_url)
    NamespaceOwnershipFactory(environment=prod, namespace="bookinfo", team=org.team_a)
    staging_draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2).draft
    prod_draft = draft_save(author=org.author, environment=prod, text=RATINGS_NEW).draft
    bobs = draft_delete_policy(author=org.approver, policy=org.policy_a, message="bob's own")
    return staging_draft, prod_draft, bobs


def test_list_groups_by_environment_and_hides_other_users_drafts(client, cluster_org, two_environments):
    staging_draft, prod_draft, bobs = two_environments
    client.force_login(cluster_org.author)
    body = client.get(DRAFTS).content.decode()
    staging_at = body.index(reverse("policies:draft-detail", args=[staging_draft.pk]))
    prod_at = body.index(reverse("policies:draft-detail", args=[prod_draft.pk]))
    staging_header = body.index('<span class="text-nowrap">staging</span>')
    prod_header = body.index('<span class="text-nowrap">prod</span>')
    assert staging_header < staging_at < prod_header < prod_at
    assert reverse("policies:draft-detail", args=[bobs.pk]) not in body
    assert "bob&#x27;s own" not in body


def test_empty_list_offers_the_upload(client, org):
    client.force_login(org.outsider)
    body = client.get(DRAFTS).content.decode()
    assert "You have no drafts" in body and f'href="{UPLOAD}"' in body


# --- detail -----------------------------------------------------------------------------------


def test_detail_shows_findings_diff_and_text(client, cluster_org):
    org = cluster_org
    draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_MISSING_SUBSET, message="v9").draft
    client.force_login(org.author)
    response = client.get(reverse("policies:draft-detail", args=[draft.pk]))
    body = response.content.decode()

    assert response.status_code == 200
    assert "staging / bookinfo / VirtualService / reviews" in body
    # Findings: level, code linking to its explanation, message, location, path.
    assert 'href="/docs/findings/MG0302/"' in body
    assert "subset &#x27;v9&#x27;" in body
    assert "line 13:" in body and "spec.http[0].route[0].destination.subset" in body
    # Diff: the added subset line, on the right, with its line number, coloured as an insertion.
    assert "revision #1 → draft" in body
    row = re.search(r'<tr class="mg-diff-row mg-diff-insert">(.*?)</tr>', body, re.S).group(1)
    assert "subset: v9" in row and 'mg-diff-no mg-diff-half mg-diff-insert">13<' in row
    assert "+1 added" in body
    # The text as written.
    assert "        subset: v9\n" in body
    assert f'action="{reverse("policies:draft-discard", args=[draft.pk])}"' in body


def test_detail_of_a_deletion_shows_everything_removed(client, org):
    draft = draft_delete_policy(author=org.author, policy=org.policy_a)
    client.force_login(org.author)
    body = client.get(reverse("policies:draft-detail", args=[draft.pk])).content.decode()
    assert "A deletion has no content to validate." in body
    assert "−4 removed" in body
    assert "revision #1 → deletion" in body


def test_detail_of_another_users_draft_is_404(client, org):
    draft = draft_delete_policy(author=org.author, policy=org.policy_a)
    for user in (org.approver, org.other, org.sec):
        client.force_login(user)
        assert client.get(reverse("policies:draft-detail", args=[draft.pk])).status_code == 404
        assert client.post(reverse("policies:draft-discard", args=[draft.pk])).status_code == 404
    assert Draft.objects.filter(pk=draft.pk).exists()


def test_discard_removes_the_draft(client, org):
    draft = draft_delete_policy(author=org.author, policy=org.policy_a)
    client.force_login(org.author)
    assert client.get(reverse("policies:draft-discard", args=[draft.pk])).status_code == 405
    response = client.post(reverse("policies:draft-discard", args=[draft.pk]), follow=True)
    assert response.redirect_chain[-1][0] == DRAFTS
    assert "Draft for VirtualService bookinfo/reviews discarded." in response.content.decode()
    assert not Draft.objects.exists()


def test_discard_needs_the_csrf_token(org):
    from django.test import Client

    draft = draft_delete_policy(author=org.author, policy=org.policy_a)
    client = Client(enforce_csrf_checks=True)
    client.force_login(org.author)
    assert client.post(reverse("policies:draft-discard", args=[draft.pk])).status_code == 403
    assert Draft.objects.exists()


def test_user_written_message_and_text_are_escaped(client, cluster_org):
    org = cluster_org
    text = REVIEWS_V2.replace("# Send", "# <script>alert('text')</script> Send")
    draft = draft_save(author=org.author, environment=org.env, text=text, message="<script>alert(1)</script>").draft
    client.force_login(org.author)
    for url in (DRAFTS, reverse("policies:draft-detail", args=[draft.pk])):
        body = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(&#x27;text&#x27;)</script>" not in body and "<script>alert('text')" not in body


# --- upload -----------------------------------------------------------------------------------


def test_upload_page_offers_environments_files_and_text(client, org):
    client.force_login(org.author)
    body = client.get(UPLOAD).content.decode()
    assert 'enctype="multipart/form-data"' in body and 'name="csrfmiddlewaretoken"' in body
    assert '<option value="' in body and ">staging<" in body
    assert 'type="file" name="files"' in body and "multiple" in body
    assert 'name="text"' in body


def test_upload_success_redirects_to_the_list_with_a_message(client, cluster_org):
    org = cluster_org
    client.force_login(org.author)
    archive = tar_gz({"m/ratings.yaml": RATINGS_NEW.encode()})
    response = client.post(
        UPLOAD,
        {
            "environment": org.env.pk,
            "files": [SimpleUploadedFile("m.tar.gz", archive), SimpleUploadedFile("reviews.yaml", REVIEWS_V2.encode())],
            "message": "release",
        },
        follow=True,
    )
    assert response.redirect_chain[-1] == (DRAFTS, 302)
    assert "2 drafts saved from the bundle for staging." in response.content.decode()
    assert sorted(Draft.objects.values_list("name", "operation", "message")) == [
        ("ratings", DraftOperation.CREATE, "release"),
        ("reviews", DraftOperation.UPDATE, "release"),
    ]


def test_upload_of_pasted_text(client, cluster_org):
    client.force_login(cluster_org.author)
    response = client.post(UPLOAD, {"environment": cluster_org.env.pk, "text": RATINGS_NEW})
    assert response.status_code == 302
    assert Draft.objects.get().source_text == RATINGS_NEW


def test_upload_with_a_default_namespace(client, cluster_org):
    client.force_login(cluster_org.author)
    text = RATINGS_NEW.replace("  namespace: bookinfo\n", "")
    refused = client.post(UPLOAD, {"environment": cluster_org.env.pk, "text": text})
    assert refused.status_code == 400 and "metadata.namespace is missing" in refused.content.decode()
    response = client.post(UPLOAD, {"environment": cluster_org.env.pk, "text": text, "namespace": "bookinfo"})
    assert response.status_code == 302
    assert Draft.objects.get().namespace == "bookinfo"


def test_upload_rejection_shows_every_finding_and_stores_nothing(client, cluster_org):
    org = cluster_org
    client.force_login(org.author)
    bad = RATINGS_NEW.replace("  namespace: bookinfo\n", "")
    response = client.post(
        UPLOAD,
        {
            "environment": org.env.pk,
            "files": [
                SimpleUploadedFile("good.yaml", REVIEWS_V2.encode()),
                SimpleUploadedFile("bad.yaml", ("---\n" + bad).encode()),
            ],
            "text": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: cart\n  namespace: shop\n",
        },
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "Bundle refused: nothing was saved" in body
    assert "bad.yaml, document 1, line 4" in body and "MG0105" in body
    assert "pasted.yaml, document 1, line 5" in body and "MG0110" in body and "namespace shop" in body
    assert stored_nothing()


def test_upload_needs_files_or_text(client, org):
    client.force_login(org.author)
    response = client.post(UPLOAD, {"environment": org.env.pk})
    assert response.status_code == 400
    assert "Choose one or more files, or paste YAML." in response.content.decode()


def test_upload_over_the_limit_is_refused_clearly(client, cluster_org):
    client.force_login(cluster_org.author)
    big = SimpleUploadedFile("big.yaml", b"#" * (13 * 1024 * 1024))
    response = client.post(UPLOAD, {"environment": cluster_org.env.pk, "files": [big]})
    assert response.status_code == 413
    assert "more than the 10 MiB accepted" in response.content.decode()
    assert stored_nothing()


# --- the policy page's Edit and Delete… -------------------------------------------------------


def policy_url(policy) -> str:
    return reverse("policies:policy-detail", args=[policy.pk])


def delete_url(policy) -> str:
    return reverse("policies:policy-delete-draft", args=[policy.pk])


@pytest.mark.parametrize("who", ["author", "approver"])
def test_team_members_see_the_delete_button(client, org, who):
    client.force_login(getattr(org, who))
    body = client.get(policy_url(org.policy_a)).content.decode()
    assert "Delete…" in body and f'action="{delete_url(org.policy_a)}"' in body


def test_others_do_not_see_the_delete_button_and_get_403(client, org):
    client.force_login(org.sec)  # reads every policy, but is not in Bookinfo
    body = client.get(policy_url(org.policy_a)).content.decode()
    assert "Delete…" not in body and delete_url(org.policy_a) not in body
    assert client.post(delete_url(org.policy_a)).status_code == 403
    client.force_login(org.other)  # cannot even read it
    assert client.post(delete_url(org.policy_a)).status_code == 404
    assert stored_nothing()


def test_delete_button_creates_a_deletion_draft(client, org):
    client.force_login(org.author)
    response = client.post(delete_url(org.policy_a), {"message": "no longer needed"})
    draft = Draft.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("policies:draft-detail", args=[draft.pk])
    assert (draft.operation, draft.policy, draft.message) == (DraftOperation.DELETE, org.policy_a, "no longer needed")
    assert client.get(delete_url(org.policy_a)).status_code == 405


def test_delete_while_editing_explains_the_conflict(client, cluster_org):
    org = cluster_org
    draft_save(author=org.author, environment=org.env, text=REVIEWS_V2)
    client.force_login(org.author)
    response = client.post(delete_url(org.policy_a), follow=True)
    assert "discard it before drafting the deletion" in response.content.decode()
    assert Draft.objects.get().operation == DraftOperation.UPDATE


def test_edit_button_only_when_the_editor_exists(client, org):
    from django.urls import NoReverseMatch

    client.force_login(org.author)
    body = client.get(policy_url(org.policy_a)).content.decode()
    try:
        edit_url = reverse("editor:policy-edit", args=[org.policy_a.pk])
    except NoReverseMatch:
        assert ">Edit</a>" not in body
    else:
        assert f'href="{edit_url}">Edit</a>' in body
        client.force_login(org.sec)
        assert ">Edit</a>" not in client.get(policy_url(org.policy_a)).content.decode()


def test_list_page_queries_do_not_grow_with_the_number_of_drafts(client, org, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import make_policy

    client.force_login(org.author)
    draft_delete_policy(author=org.author, policy=org.policy_a)
    with CaptureQueriesContext(connection) as one:
        assert client.get(DRAFTS).status_code == 200
    for n in range(5):
        draft_delete_policy(
            author=org.author, policy=make_policy(environment=org.env, namespace="bookinfo", name=f"p{n}")
        )
    with django_assert_num_queries(len(one.captured_queries)):
        body = client.get(DRAFTS).content.decode()
    assert body.count('mg-state-error">Delete<') == 6


def test_findings_partial_locates_each_finding_and_escapes_messages():
    from django.template.loader import render_to_string

    def finding(**fields):
        base = {
            "code": "MG0302",
            "level": "error",
            "message": "m",
            "layer": "semantic",
            "file": "",
            "document": None,
            "line": None,
            "column": None,
            "path": "",
            "object": "",
        }
        return {**base, **fields}

    html = render_to_string(
        "policies/_findings.html",
        {
            "findings": [
                finding(
                    file="a/b.yaml", document=2, line=14, column=3, path="spec.hosts[0]", object="VirtualService ns/x"
                ),
                finding(document=0, line=7, level="warning", code="MG0309"),
                finding(code="MG0300", level="info", message="<b>cluster</b> state not read"),
            ]
        },
    )
    assert "a/b.yaml, document 3, line 14:3" in html
    assert '<code class="mg-finding-path">spec.hosts[0]</code>' in html and "VirtualService ns/x" in html
    assert '<span class="font-monospace mg-finding-where">line 7</span>' in html
    assert 'href="/docs/findings/MG0309/"' in html and 'mg-state-warn">warning<' in html
    assert "&lt;b&gt;cluster&lt;/b&gt; state not read" in html
    assert html.count("mg-finding-where") == 2  # the bundle-wide finding has no location
    assert "No findings." in render_to_string("policies/_findings.html", {"findings": []})


def test_pasted_text_over_the_form_limit_is_a_client_error(client, org):
    from django.conf import settings

    client.force_login(org.author)
    text = "# " + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    response = client.post(UPLOAD, {"environment": org.env.pk, "text": text})
    assert 400 <= response.status_code < 500
    assert stored_nothing()
