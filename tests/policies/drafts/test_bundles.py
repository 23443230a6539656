import io
import tarfile
import tracemalloc
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
    (
        "rules.yaml",
        (
            destination_rule("reviews") + "---\n" + destination_rule("ratings") + "---\n" + destination_rule("details")
        ).encode(),
    ),
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
    bad_rules = (
        destination_rule("reviews")
        + "---\n"
        + destination_rule("ratings").replace("  namespace: bookinfo\n", "")
        + "---\n"
        + destination_rule("details")
    ).encode()
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
    archive = tar_gz(
        {
            "bookinfo/routing/reviews.yaml": REVIEWS_V2.encode(),
            "bookinfo/routing/ratings.yml": RATINGS_NEW.encode(),
            "bookinfo/rules.json": b'{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",'
            b' "metadata": {"name": "reviews", "namespace": "bookinfo"}, "spec": {"host": "reviews"}}',
            "bookinfo/README.md": b"# not a manifest",
            "bookinfo/.hidden.yaml": b"\x00\x01 not read",
        }
    )
    drafts = drafts_from_bundle(author=org.author, environment=org.env, files=[("bookinfo.tar.gz", archive)])
    assert len(drafts) == 3
    assert identities() == [
        ("DestinationRule", "bookinfo", "reviews"),
        ("VirtualService", "bookinfo", "ratings"),
        ("VirtualService", "bookinfo", "reviews"),
    ]


def test_zip_of_a_folder_names_findings_after_the_files_inside(cluster_org):
    org = cluster_org
    archive = zip_bytes(
        {
            "manifests/": b"",
            "manifests/reviews.yaml": REVIEWS_V2.encode(),
            "manifests/broken.yaml": b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: x\n",
        }
    )
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
    for name, archive in (
        ("b.tar.gz", tar_gz({member: REVIEWS_V2.encode()})),
        ("b.zip", zip_bytes({member: REVIEWS_V2.encode()})),
    ):
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
        info.external_attr = 0o120777 << 16  # a symlink, as `zip --symlinks` stores it
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
        data[position + offset : position + offset + 4] = (10).to_bytes(4, "little")
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
    files, findings = expand_bundle(
        [("x.yaml", b"b: 2\n"), ("dir.tar", _plain_tar({"dir/c.yaml": b"c: 3\n"})), ("y.tgz", archive)]
    )
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


# --- hostile tar headers ----------------------------------------------------------------------


def _header(name: bytes, typeflag: bytes, size: int) -> bytes:
    """One ustar header block, checksummed, as an attacker would write it by hand."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\0"
    block[124:136] = f"{size:011o}\0".encode()
    block[156:157] = typeflag
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return bytes(block)


def _gz(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, compresslevel=9)


def test_pax_header_of_digits_is_refused_at_once_cve_2024_6232():
    # The record length is 64k digits and no space: CPython < 3.11.10 backtracks quadratically on it.
    payload = b"1" * 65_000 + b"\n"
    archive = _header(b"././@PaxHeader", b"x", len(payload)) + payload + bytes(-len(payload) % 512) + bytes(1024)
    files, findings = expand_bundle([("pax.tar", archive)])
    # refused by the bounded length check of the first record, before any parser reads the digits
    # (benchmarks/hostile_archives.py measures how fast)
    assert files == [] and [(f.code, f.message) for f in findings] == [
        ("MG0021", "the tar archive cannot be read: a pax header record has no valid length")
    ]

    payload = b"9" * 4_000 + b" path=a.yaml\n"
    archive = _header(b"././@PaxHeader", b"x", len(payload)) + payload + bytes(-len(payload) % 512) + bytes(1024)
    files, findings = expand_bundle([("pax.tar", archive)])
    assert files == [] and findings[0].code == "MG0021" and "pax header record" in findings[0].message


def test_crafted_long_name_member_is_weighed_before_it_is_read():
    # A GNU long-name member claiming 200 MiB of zeros: ~200 KiB once gzipped.
    size = 200 * 1024 * 1024
    raw = _header(b"././@LongLink", b"L", size)
    compressor = __import__("zlib").compressobj(9, wbits=31)
    chunks = [compressor.compress(raw)]
    zeros = bytes(1024 * 1024)
    for _ in range(size // len(zeros)):
        chunks.append(compressor.compress(zeros))
    chunks.append(compressor.flush())
    archive = b"".join(chunks)
    assert len(archive) < 400 * 1024
    tracemalloc.start()
    try:
        files, findings = expand_bundle([("long.tar.gz", archive)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert files == [] and findings[0].code == "MG0020" and "extended header" in findings[0].message
    assert peak < 8 * 1024 * 1024, f"{peak / 1024 / 1024:.1f} MiB to refuse a long-name bomb"


def test_many_pax_headers_count_against_the_bundle_budget():
    record = b"path=" + b"a" * (60 * 1024) + b"\n"
    length = len(record) + 6
    payload = f"{length} ".encode() + record
    assert len(payload) == length
    one = _header(b"././@PaxHeader", b"x", len(payload)) + payload + bytes(-len(payload) % 512)
    archive = _gz(one * 200 + bytes(1024))
    assert len(archive) < 400 * 1024
    tracemalloc.start()
    try:
        files, findings = expand_bundle([("pax.tar.gz", archive)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert files == [] and findings[0].code == "MG0001" and "extended header" in findings[0].message
    assert peak < 16 * 1024 * 1024


def test_pax_and_gnu_long_names_of_honest_archives_are_read():
    long_name = "m/" + "d" * 120 + "/ünïcode-reviews.yaml"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as bundle:
            for name, content in ((long_name, b"a: 1\n"), ("m/b.yaml", b"b: 2\n" * 300)):
                info = tarfile.TarInfo(name)
                info.size = len(content)
                bundle.addfile(info, io.BytesIO(content))
        files, findings = expand_bundle([("honest.tgz", buffer.getvalue())])
        assert findings == []
        assert files == [(long_name, b"a: 1\n"), ("m/b.yaml", b"b: 2\n" * 300)]
    for mode in ("w:bz2", "w:xz"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode=mode) as bundle:
            info = tarfile.TarInfo("m/c.yaml")
            info.size = 5
            bundle.addfile(info, io.BytesIO(b"c: 3\n"))
        assert expand_bundle([("c.tar", buffer.getvalue())]) == ([("m/c.yaml", b"c: 3\n")], [])


def test_a_tar_header_with_a_wrong_checksum_is_refused():
    archive = bytearray(_header(b"m/a.yaml", b"0", 5) + b"a: 1\n" + bytes(507) + bytes(1024))
    archive[0] = ord("n")
    files, findings = expand_bundle([("bad.tar", bytes(archive))])
    assert files == [] and findings[0].code == "MG0021" and "checksum" in findings[0].message
