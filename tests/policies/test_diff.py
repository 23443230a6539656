import copy

from policies.diff import ChangeOp, RowTag, diff_objects, format_path
from tests.factories import virtual_service


def split_route(first: int, second: int) -> dict:
    obj = virtual_service("reviews", "bookinfo")
    obj["spec"]["http"][0]["route"] = [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": first},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": second},
    ]
    return obj


def changes(old, new) -> list[tuple[str, str, object, object]]:
    return [(c.path, str(c.op), c.old, c.new) for c in diff_objects(old, new).changes]


def test_changed_list_item_field_has_a_kubernetes_style_path():
    assert changes(split_route(90, 10), split_route(50, 50)) == [
        ("spec.http[0].route[0].weight", "changed", 90, 50),
        ("spec.http[0].route[1].weight", "changed", 10, 50),
    ]


def test_added_and_removed_fields_and_list_items():
    old = split_route(90, 10)
    new = copy.deepcopy(old)
    new["spec"]["http"][0]["timeout"] = "5s"
    new["spec"]["http"][0]["route"].append({"destination": {"host": "reviews", "subset": "v3"}, "weight": 0})
    del new["spec"]["hosts"]
    assert changes(old, new) == [
        ("spec.hosts", "removed", ["reviews"], None),
        ("spec.http[0].route[2]", "added", None, {"destination": {"host": "reviews", "subset": "v3"}, "weight": 0}),
        ("spec.http[0].timeout", "added", None, "5s"),
    ]
    assert diff_objects(old, new).summary == {"added": 2, "removed": 1, "changed": 0}


def test_removed_list_item_and_type_change():
    old = split_route(90, 10)
    new = copy.deepcopy(old)
    new["spec"]["http"][0]["route"].pop()
    new["spec"]["http"][0]["route"][0]["weight"] = "90"
    assert changes(old, new) == [
        ("spec.http[0].route[0].weight", "changed", 90, "90"),
        ("spec.http[0].route[1]", "removed", {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}, None),
    ]


def test_label_keys_with_dots_and_slashes_are_bracketed():
    old = virtual_service("reviews", "bookinfo")
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"app.kubernetes.io/name": "reviews", "team": "a"}
    old["metadata"]["labels"] = {"team": "b"}
    assert changes(old, new) == [
        ("metadata.labels[app.kubernetes.io/name]", "added", None, "reviews"),
        ("metadata.labels.team", "changed", "b", "a"),
    ]
    assert format_path(["spec", "http", 0, "match", 2, "headers", "x-user"]) == "spec.http[0].match[2].headers[x-user]"


def test_server_managed_fields_and_status_are_not_differences():
    live = virtual_service("reviews", "bookinfo")
    live["metadata"].update(
        resourceVersion="812",
        uid="abc",
        generation=4,
        creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}],
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    )
    live["status"] = {"validationMessages": []}
    diff = diff_objects(live, virtual_service("reviews", "bookinfo"))
    assert diff.is_empty
    assert diff.summary == {"added": 0, "removed": 0, "changed": 0}
    assert "resourceVersion" not in diff.old_yaml


def test_creation_and_deletion_diff_against_nothing():
    obj = virtual_service("reviews", "bookinfo")
    created = diff_objects(None, obj)
    assert [(c.path, c.op) for c in created.changes] == [
        ("apiVersion", ChangeOp.ADDED),
        ("kind", ChangeOp.ADDED),
        ("metadata", ChangeOp.ADDED),
        ("spec", ChangeOp.ADDED),
    ]
    assert created.old_yaml == "" and all(row.tag == RowTag.INSERT for row in created.rows)
    deleted = diff_objects(obj, None)
    assert deleted.summary == {"added": 0, "removed": 4, "changed": 0}
    assert all(row.tag == RowTag.DELETE and row.right_no is None for row in deleted.rows)


def test_side_by_side_rows_align_lines_with_numbers():
    old = split_route(90, 10)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"app": "reviews"}
    new["spec"]["http"][0]["route"][1]["weight"] = 20
    rows = diff_objects(old, new).rows
    assert [(r.left_no, r.left, r.right_no, r.right, str(r.tag)) for r in rows[:6]] == [
        (1, "apiVersion: networking.istio.io/v1", 1, "apiVersion: networking.istio.io/v1", "equal"),
        (2, "kind: VirtualService", 2, "kind: VirtualService", "equal"),
        (3, "metadata:", 3, "metadata:", "equal"),
        (None, "", 4, "  labels:", "insert"),
        (None, "", 5, "    app: reviews", "insert"),
        (4, "  name: reviews", 6, "  name: reviews", "equal"),
    ]
    (changed,) = [r for r in rows if r.tag == RowTag.REPLACE]
    assert (changed.left, changed.right) == ("      weight: 10", "      weight: 20")
    assert changed.left_no + 2 == changed.right_no  # two lines were inserted above
    assert rows[-1].left_no == len(diff_objects(old, new).old_lines)


def test_long_unchanged_runs_fold_but_keep_context():
    old = virtual_service("reviews", "bookinfo")
    old["spec"]["hosts"] = [f"host-{n}" for n in range(30)]
    new = copy.deepcopy(old)
    new["spec"]["hosts"][29] = "host-changed"
    diff = diff_objects(old, new)
    folded = diff.side_by_side
    skips = [row for row in folded if row.tag == RowTag.SKIP]
    assert len(skips) == 1
    assert sum(row.skipped for row in skips) + len(folded) - 1 == len(diff.rows)
    changed_at = next(i for i, row in enumerate(folded) if row.tag == RowTag.REPLACE)
    assert all(row.tag == RowTag.EQUAL for row in folded[changed_at - 3 : changed_at])
    inline = diff.inline
    assert [row.sign for row in inline if row.tag != RowTag.EQUAL and row.tag != RowTag.SKIP] == ["-", "+"]


def test_unified_text():
    text = diff_objects(split_route(90, 10), split_route(80, 20)).unified(old_label="revision #1", new_label="draft")
    assert text.startswith("--- revision #1\n+++ draft\n")
    assert "-      weight: 90\n" in text and "+      weight: 80\n" in text


def test_as_dict_is_json_ready():
    data = diff_objects(split_route(90, 10), split_route(80, 20)).as_dict()
    assert data["summary"] == {"added": 0, "removed": 0, "changed": 2}
    assert data["changes"][0] == {"path": "spec.http[0].route[0].weight", "op": "changed", "old": 90, "new": 80}
