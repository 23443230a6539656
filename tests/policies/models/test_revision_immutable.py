import pytest
from django.db import connection

from policies.exceptions import ImmutableError
from policies.models import PolicyRevision
from tests.factories import EnvironmentFactory, make_policy


@pytest.fixture
def revision(db):
    policy = make_policy(environment=EnvironmentFactory(name="staging"), namespace="bookinfo", name="reviews")
    return policy.current_revision


def test_saving_a_stored_revision_is_refused(revision):
    revision.content = {"spec": {"hosts": ["evil"]}}
    with pytest.raises(ImmutableError, match="immutable"):
        revision.save()
    assert PolicyRevision.objects.get(pk=revision.pk).content["spec"]["hosts"] == ["reviews"]


def test_bulk_update_and_delete_are_refused(revision):
    with pytest.raises(ImmutableError):
        PolicyRevision.objects.filter(pk=revision.pk).update(message="changed")
    with pytest.raises(ImmutableError):
        PolicyRevision.objects.filter(pk=revision.pk).delete()
    with pytest.raises(ImmutableError):
        revision.delete()
    assert PolicyRevision.objects.get(pk=revision.pk).message == ""


@pytest.mark.django_db(transaction=True)
def test_the_database_itself_refuses_an_update():
    policy = make_policy(environment=EnvironmentFactory(name="staging"), namespace="bookinfo", name="ratings")
    with pytest.raises(Exception, match="immutable"):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE policies_policyrevision SET message = 'sneaky'")
    assert PolicyRevision.objects.get(policy=policy).message == ""
