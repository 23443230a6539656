import io
import tarfile
import zipfile

import pytest

from policies.bundles import MAX_BUNDLE_FILES, expand_bundle
from policies.choices import DraftOperation
from policies.exceptions import DraftRejected
from policies.models import Draft
from policies.services.drafts import draft_save, drafts_from_bundle
from tests.policies.drafts.helpers import (
    RATINGS_NEW,
    REVIEWS_V2,
    cluster_org,  # noqa: F401 - fixture
    destination_rule,
    stored_nothing,
    tar_gz,
    virtual_service_text,
    zip_bytes,
)

FIVE_OBJECTS = [
    ("routing.yaml", (REVIEWS_V2 + "---\n" + RATINGS_NEW).encode()),
    ("rules.yaml", (destination_rule("reviews") + "---\n" + destination_rule("ratings") + "---\n"
                    + destination_rule("details")).encode()),
]


def identities() -> list[tuple[str, str, str]]:
    return sorted(Draft.objects.values_list("kind", "namespace", "name"))


def test_each_object_of_a_bundle_becomes_a_draft(cluster_org):
    org = cluster_org
    drafts = drafts_from_bundle(author=org.author, environment=org.env, files=FIVE_OBJECTS, message="bookinfo v2")

    assert len(drafts) == 5
    assert identities() == [
        ("DestinationRule", "bookinfo", "details"),
        ("DestinationRule", "bookinfo", "ratings"),
        ("DestinationRule", "bookinfo", "reviews"),
        ("VirtualService", "bookinfo", "ratings"),
        ("VirtualService", "bookinfo", "reviews"),
    ]
    reviews = Draft.objects.get(kind="VirtualService", name="reviews")
    assert reviews.operation == DraftOperation.UPDATE and reviews.policy == org.policy_a
    assert reviews.message == "bookinfo v2"
    # Each draft keeps its own document's text, comment included, without its neighbours.
    assert reviews.source_text == REVIEWS_V2
    ratings_rule = Draft.objects.get(kind="DestinationRule", name="ratings")
    assert ratings_rule.source_text == destination_rule("ratings")
    assert ratings_rule.operation == DraftOperation.CREATE


def test_a_bundle_updates_the_authors_existing_draft_for_the_same_object(cluster_org):
    org = cluster_org
    existing = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2.replace("5s", "1s")).draft
    drafts_from_bundle(author=org.author, environment=org.env, files=FIVE_OBJECTS)
    assert Draft.objects.count() == 5
    existing.refresh_from_db()
    assert existing.content["spec"]["http"][0]["timeout"] == "5s"


def test_one_bad_document_among_five_stores_nothing_and_is_located(cluster_org):
    org = cluster_org
    bad_rules = (destination_rule("reviews") + "---\n" + destination_rule("ratings").replace("  namespace: bookinfo\n", "")
                 + "---\n" + destination_rule("details")).encode()
    files = [FIVE_OBJECTS[0], ("rules.yaml", bad_rules)]

    with pytest.raises(DraftRejected) as caught:
        drafts_from_bundle(author=org.author, environment=org.env, files=files)

    rejection = caught.value
    assert rejection.code == "bundle_rejected" and rejection.status == 400
    (finding,) = rejection.findings
    assert finding["code"] == "MG0105"  # namespace missing
    assert finding["file"] == "rules.yaml"
    assert finding["document"] == 1
    assert finding["line"] == 11  # `metadata:` of the second document, which starts on line 9 of rules.yaml
    assert "rules.yaml" in rejection.message
    assert stored_nothing()


def test_every_blocking_finding_is_reported_not_only_the_first(cluster_org):
    org = cluster_org
    files = [
        ("a.yaml", b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: bookinfo\n"),
        ("b.yaml", b"kind: [unclosed\n"),
        ("c.yaml", virtual_service_text("cart", namespace="shop").encode()),
    ]
    with pytest.raises(DraftRejected) as caught:
        drafts_from_bundle(author=org.author, environment=org.env, files=files)
    located = {(finding["file"], finding["code"]) for finding in caught.value.findings}
    assert located == {("a.yaml", "MG0102"), ("b.yaml", "MG0004"), ("c.yaml", "MG0110")}
    assert stored_nothing()


def test_a_document_in_another_teams_namespace_refuses_the_bundle(cluster_org):
    org = cluster_org
    files = [("mixed.yaml", (REVIEWS_V2 + "---\n" + virtual_service_text("cart", namespace="shop")).encode())]
    with pytest.raises(DraftRejected) as caught:
        drafts_from_bundle(author=org.author, environment=org.env, files=files)
    assert caught.value.status == 403 and caught.value.code == "bundle_rejected"
    (finding,) = caught.value.findings
    assert (finding["file"], finding["document"], finding["path"]) == ("mixed.yaml", 1, "metadata.namespace")
    assert "namespace shop" in finding["message"]
    assert stored_nothing()


# --- archives ---------------------------------------------------------------------------------

def test_tar_gz_of_a_folder_of_manifests(cluster_org):
    org = cluster_org
    archive = tar_gz({
        "bookinfo/routing/reviews.yaml": REVIEWS_V2.encode(),
        "bookinfo/routing/ratings.yml": RATINGS_NEW.encode(),
        "bookinfo/rules.json": b'{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",'
                               b' "metadata": {"name": "reviews", "namespace": "bookinfo"}, "spec": {"host": "reviews"}}',
        "bookinfo/README.md": b"# not a manifest",
        "bookinfo/.hidden.yaml": b"\x00\x01 not read",
    })
    drafts = drafts_from_bundle(author=org.author, environment=org.env, files=[("bookinfo.tar.gz", archive)])
    assert len(drafts) == 3
    assert identities() == [
        ("DestinationRule", "bookinfo", "reviews"),
        ("VirtualService", "bookinfo", "ratings"),
        ("VirtualService", "bookinfo", "reviews"),
    ]


def test_zip_of_a_folder_names_findings_after_the_files_inside(cluster_org):
    org = cluster_org
    archive = zip_bytes({
        "manifests/": b"",
        "manifests/reviews.yaml": REVIEWS_V2.encode(),
        "manifests/broken.yaml": b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: x\n",
    })
    with pytest.raises(DraftRejected) as caught:
        drafts_from_bundle(author=org.author, environment=org.env, files=[("bundle.zip", archive)])
    (finding,) = caught.value.findings
    assert finding["file"] == "manifests/broken.yaml" and finding["code"] == "MG0105"
    assert stored_nothing()

    archive = zip_bytes({"manifests/reviews.yaml": REVIEWS_V2.encode(), "manifests/ratings.yaml": RATINGS_NEW.encode()})
    assert len(drafts_from_bundle(author=org.author, environment=org.env, files=[("bundle.zip", archive)])) == 2


@pytest.mark.parametrize("member", ["../evil.yaml", "/etc/evil.yaml", "ok/../../evil.yaml"])
def test_archive_members_outside_the_folder_are_refused(cluster_org, member):
    org = cluster_org
    for name, archive in (("b.tar.gz", tar_gz({member: REVIEWS_V2.encode()})),
                          ("b.zip", zip_bytes({member: REVIEWS_V2.encode()}))):
        with pytest.raises(DraftRejected) as caught:
            drafts_from_bundle(author=org.author, environment=org.env, files=[(name, archive)])
        (finding,) = caught.value.findings
        assert finding["code"] == "MG0020" and finding["file"] == name
        assert member in finding["message"]
    assert stored_nothing()


def test_symbolic_links_in_archives_are_refused(cluster_org):
    org = cluster_org
    archive = tar_gz({"m/reviews.yaml": REVIEWS_V2.encode()}, symlinks={"m/passwd.yaml": "/etc/passwd"})
    with pytest.raises(DraftRejected) as caught:
        drafts_from_bundle(author=org.author, environment=org.env, files=[("m.tgz", archive)])
    (finding,) = caught.value.findings
    assert finding["code"] == "MG0020" and "m/passwd.yaml" in finding["message"] and "link" in finding["message"]

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        info = zipfile.ZipInfo("m/link.yaml")
        info.external_attr = (0o120777 << 16)  # a symlink, as `zip --symlinks` stores it
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(DraftRejected) as caught:
        drafts_from_bundle(author=org.author, environment=org.env, files=[("m.zip", buffer.getvalue())])
    assert caught.value.findings[0]["code"] == "MG0020"
    assert stored_nothing()


def test_zip_bomb_is_refused_before_it_is_expanded(cluster_org):
    org = cluster_org
    bomb = zip_bytes({"m/a.yaml": b"#" * (6 * 1024 * 1024), "m/b.yaml": b"#" * (6 * 1024 * 1024)})
    assert len(bomb) < 100_000  # highly compressed
    with pytest.raises(DraftRejected) as caught:
        drafts_from_bundle(author=org.author, environment=org.env, files=[("bomb.zip", bomb)])
    (finding,) = caught.value.findings
    assert finding["code"] == "MG0001" and "expands to more than 10 MiB" in finding["message"]

    tar_bomb = tar_gz({"m/big.txt": b"\0" * (11 * 1024 * 1024)})
    with pytest.raises(DraftRejected) as caught:
        drafts_from_bundle(author=org.author, environment=org.env, files=[("bomb.tar.gz", tar_bomb)])
    assert caught.value.findings[0]["code"] == "MG0001"
    assert stored_nothing()


def test_zip_whose_header_understates_the_size_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("m/a.yaml", b"a: 1\n" * 1000)
    data = bytearray(buffer.getvalue())
    # Rewrite the declared uncompressed size (local header and central directory) to 10 bytes.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        position = data.find(signature)
        data[position + offset:position + offset + 4] = (10).to_bytes(4, "little")
    files, findings = expand_bundle([("liar.zip", bytes(data))])
    assert files == []
    assert findings[0].code in ("MG0001", "MG0021")


def test_more_files_than_a_bundle_may_hold_are_refused():
    archive = tar_gz({f"m/{n}.yaml": b"" for n in range(MAX_BUNDLE_FILES + 1)})
    files, findings = expand_bundle([("many.tar.gz", archive)])
    assert [finding.code for finding in findings] == ["MG0022"]
    assert f"more than {MAX_BUNDLE_FILES} files" in findings[0].message


def test_corrupt_archive_is_a_finding_not_a_crash():
    files, findings = expand_bundle([("broken.tar.gz", b"\x1f\x8b\x08\x00garbage")])
    assert files == [] and findings[0].code == "MG0021" and findings[0].file == "broken.tar.gz"
    files, findings = expand_bundle([("broken.zip", b"PK\x03\x04garbage")])
    assert files == [] and findings[0].code == "MG0021"


def test_plain_files_pass_through_and_members_keep_their_names():
    archive = tar_gz({"./dir/a.yaml": b"a: 1\n"})
    files, findings = expand_bundle([("x.yaml", b"b: 2\n"), ("dir.tar", _plain_tar({"dir/c.yaml": b"c: 3\n"})),
                                     ("y.tgz", archive)])
    assert findings == []
    assert files == [("x.yaml", b"b: 2\n"), ("dir/c.yaml", b"c: 3\n"), ("dir/a.yaml", b"a: 1\n")]


def _plain_tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
