"""Building changes the way users do: drafts first, then a change from them."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractBaseUser

from policies.models import ChangeRequest, Environment
from policies.services.changes import change_create, change_submit
from policies.services.drafts import draft_delete_policy, draft_save
from tests.policies.drafts.helpers import REVIEWS_V2, virtual_service_text

__all__ = ["REVIEWS_V2", "cluster_org", "make_change", "submitted_change", "virtual_service_text"]

REVIEWS_V3 = REVIEWS_V2.replace("timeout: 5s", "timeout: 7s")

AUTHZ_RATINGS = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-viewer
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: ratings
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/bookinfo/sa/bookinfo-reviews
"""


@pytest.fixture
def cluster_org(org, meshsim):
    """The `org` fixture with its staging environment pointing at the simulated staging cluster."""
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    org.meshsim = meshsim
    return org


def make_change(
    *, author: AbstractBaseUser, environment: Environment, texts: list[str] = (REVIEWS_V2,), title: str = "Tune reviews",
    delete=(),
) -> ChangeRequest:
    drafts = [draft_save(author=author, environment=environment, text=text).draft for text in texts]
    drafts += [draft_delete_policy(author=author, policy=policy) for policy in delete]
    return change_create(author=author, environment=environment, drafts=drafts, title=title)


def submitted_change(org, **kwargs) -> ChangeRequest:
    change = make_change(author=org.author, environment=org.env, **kwargs)
    return change_submit(actor=org.author, change=change)
