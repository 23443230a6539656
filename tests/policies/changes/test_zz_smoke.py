from policies.services.reviews import review_approve
from policies.approval import approval_status
from tests.policies.changes.helpers import submitted_change, cluster_org  # noqa

def test_smoke(cluster_org):
    org = cluster_org
    change = submitted_change(org)
    print(change.state, [ (i.findings) for i in change.items.all()])
    review = review_approve(reviewer=org.approver, change=change)
    change.refresh_from_db()
    print(change.state, approval_status(change).summary, approval_status(change).blockers)
    p = change.plans.first()
    print(p.status, p.error, [ (pi.live_state, pi.findings, pi.diff_live["summary"]) for pi in p.items.all()])
