"""A kind Meshgate did not govern before (Telemetry, EnvoyFilter) goes the whole way against meshsim
over HTTP: imported from the cluster, listed in the catalog (page and API), drafted in the editor and as
a bundle, and rolled out with the `direct` strategy (its default) by the real worker, analysis
included: promoted when healthy, rolled back to the snapshot when the analysis fails."""

import pytest
from django.urls import reverse

from integrations import kubernetes as kube
from policies.choices import DraftOperation, RolloutStrategy
from policies.cluster import cluster_config
from policies.models import Draft, Policy
from policies.normalize import normalize_object
from policies.services.drafts import draft_save, drafts_from_bundle
from policies.services.imports import environment_import
from policies.services.rollouts import rollout_start
from tests.policies.rollouts.helpers import live_normalized, scheduled_change
from tests.policies.rollouts.test_end_to_end import (
    ANALYSIS,
    BEAT,
    TIMEOUT,
    _clear_faults,
    _fault,
)
from tests.policies.rollouts.test_worker import wait_terminal

TELEMETRY = {
    "apiVersion": "telemetry.istio.io/v1",
    "kind": "Telemetry",
    "metadata": {"name": "reviews-logs", "namespace": "bookinfo"},
    "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "accessLogging": [{"providers": [{"name": "envoy"}]}]},
}
ENVOY_FILTER = {
    "apiVersion": "networking.istio.io/v1alpha3",
    "kind": "EnvoyFilter",
    "metadata": {"name": "ratings-lua", "namespace": "bookinfo"},
    "spec": {
        "workloadSelector": {"labels": {"app": "ratings"}},
        "configPatches": [
            {
                "applyTo": "HTTP_FILTER",
                "match": {
                    "context": "SIDECAR_INBOUND",
                    "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}},
                },
                "patch": {
                    "operation": "INSERT_FIRST",
                    "value": {
                        "name": "envoy.filters.http.lua",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                            "inlineCode": "function envoy_on_request(handle) end",
                        },
                    },
                },
            }
        ],
    },
}
TELEMETRY_TEXT = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: reviews-logs
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: reviews
  accessLogging:
  - providers:
    - name: envoy
    filter:
      expression: response.code >= 400
"""


@pytest.fixture
def live_org(org, meshsim):
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    cfg = cluster_config(org.env)
    for obj in (TELEMETRY, ENVOY_FILTER):
        kube.apply_object(cfg, obj)
    org.meshsim = meshsim
    return org


def test_new_kinds_are_imported_and_catalogued(live_org, client):
    result = environment_import(environment=live_org.env)
    assert not result.errors
    imported = Policy.objects.filter(environment=live_org.env, kind__in=["Telemetry", "EnvoyFilter"])
    assert {(p.kind, p.namespace, p.name) for p in imported} == {
        ("Telemetry", "bookinfo", "reviews-logs"),
        ("EnvoyFilter", "bookinfo", "ratings-lua"),
    }
    telemetry = imported.get(kind="Telemetry")
    assert telemetry.current_revision.content["spec"] == TELEMETRY["spec"]
    assert telemetry.current_revision.content["apiVersion"] == "telemetry.istio.io/v1"

    client.force_login(live_org.author)
    page = client.get(reverse("policies:catalog"), {"kind": "Telemetry"})
    assert page.status_code == 200 and b"reviews-logs" in page.content and b"ratings-lua" not in page.content
    body = client.get(reverse("api:policy-list"), {"kind": "EnvoyFilter"}).json()
    assert [row["name"] for row in body["results"]] == ["ratings-lua"]


def test_new_kinds_are_drafted_in_the_editor_and_in_bundles(live_org, client):
    environment_import(environment=live_org.env)
    saved = draft_save(author=live_org.author, environment=live_org.env, text=TELEMETRY_TEXT)
    assert saved.draft.kind == "Telemetry" and saved.draft.operation == DraftOperation.UPDATE
    assert not saved.report.has_errors, [f.as_dict() for f in saved.report.findings]

    # A repository folder mixing the eight historical kinds with the new ones is drafted as a whole.
    folder = [
        ("telemetry.yaml", TELEMETRY_TEXT.replace("reviews-logs", "ratings-logs").encode()),
        (
            "wasm.yaml",
            b"apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n"
            b"metadata: {name: auth, namespace: bookinfo}\n"
            b"spec: {selector: {matchLabels: {app: productpage}}, url: 'oci://ghcr.io/x/auth:1',"
            b" phase: AUTHN}\n",
        ),
        (
            "vs.yaml",
            b"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
            b"metadata: {name: details-timeout, namespace: bookinfo}\n"
            b"spec: {hosts: [details], http: [{route: [{destination: {host: details}}], timeout: 5s}]}\n",
        ),
    ]
    drafts_from_bundle(author=live_org.author, environment=live_org.env, files=folder)
    assert set(Draft.objects.filter(author=live_org.author).values_list("kind", flat=True)) == {
        "Telemetry",
        "WasmPlugin",
        "VirtualService",
    }

    client.force_login(live_org.author)
    editor = client.get(
        reverse("editor:new"), {"environment": "staging", "kind": "EnvoyFilter", "namespace": "bookinfo"}
    )
    assert editor.status_code == 200 and b"networking.istio.io/v1alpha3" in editor.content
    schema = client.get(reverse("editor:schema", args=["staging", "Telemetry"])).json()
    assert schema["apiVersion"] == "telemetry.istio.io/v1"
    assert schema["schema"]["properties"]["apiVersion"]["enum"] == [
        "telemetry.istio.io/v1",
        "telemetry.istio.io/v1alpha1",
    ]
    assert "accessLogging" in schema["schema"]["properties"]["spec"]["properties"]


@pytest.fixture
def e2e_new_kind(transactional_db, monkeypatch, ro_live, request):
    monkeypatch.delenv("MESHGATE_ROLLOUT_ANALYZER", raising=False)
    request.getfixturevalue("celery_worker_process")
    yield ro_live
    ro_live.meshsim.admin("DELETE", "traffic/faults").raise_for_status()


def test_a_new_kind_rolls_out_directly_with_analysis(e2e_new_kind):
    org = e2e_new_kind
    env = org.env
    identity = ("Telemetry", "bookinfo", "reviews-logs")
    assert live_normalized(env, *identity) is None

    _fault(org, service="reviews")  # the analysis sees the reviews workload failing: the new object comes out again
    change = scheduled_change(org, [(DraftOperation.CREATE, TELEMETRY)], title="reviews access logs")
    rollout = wait_terminal(rollout_start(change=change, analysis=ANALYSIS), timeout=TIMEOUT, beat=BEAT)
    assert rollout.strategy == RolloutStrategy.DIRECT
    assert rollout.state == "rolled_back", rollout.error or rollout.pause_reason
    assert live_normalized(env, *identity) is None

    _clear_faults(org)
    change = scheduled_change(org, [(DraftOperation.CREATE, TELEMETRY)], title="reviews access logs, again")
    rollout = wait_terminal(rollout_start(change=change, analysis=ANALYSIS), timeout=TIMEOUT, beat=BEAT)
    assert (rollout.strategy, rollout.state) == (RolloutStrategy.DIRECT, "completed"), rollout.error
    assert live_normalized(env, *identity) == normalize_object(TELEMETRY)
