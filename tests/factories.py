import factory
from django.contrib.auth import get_user_model

from policies.choices import ClusterAuth, PolicyKind, RevisionSource, Role
from policies.models import Environment, Membership, NamespaceOwnership, Policy, PolicyRevision, Team
from policies.normalize import content_hash, normalize_object


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests")


class EnvironmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Environment
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"env{n}")
    order = factory.Sequence(lambda n: n * 10)
    auth_mode = ClusterAuth.TOKEN
    api_url = "http://127.0.0.1:9"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"team{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.AUTHOR


class NamespaceOwnershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NamespaceOwnership

    environment = factory.SubFactory(EnvironmentFactory)
    namespace = factory.Sequence(lambda n: f"ns{n}")
    team = factory.SubFactory(TeamFactory)


def virtual_service(name: str, namespace: str, host: str | None = None) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host or name], "http": [{"route": [{"destination": {"host": host or name}}]}]},
    }


def make_policy(
    *,
    environment: Environment,
    namespace: str,
    name: str,
    kind: str = PolicyKind.VIRTUAL_SERVICE,
    content: dict | None = None,
) -> Policy:
    """A policy with one imported revision, as an import would leave it."""
    policy = Policy.objects.create(environment=environment, kind=kind, namespace=namespace, name=name)
    content = normalize_object(content or virtual_service(name, namespace))
    revision = PolicyRevision.objects.create(
        policy=policy, number=1, content=content, content_hash=content_hash(content), source=RevisionSource.IMPORT
    )
    policy.current_revision = revision
    policy.save(update_fields=["current_revision"])
    return policy


def grant_platform_admin(user):
    """Gives `user` the platform role (the `policies.govern_platform` permission), as an admin would in
    the Django admin; returns a fresh instance (permissions are cached per instance)."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    # get_or_create: a transactional test's flush may have emptied the permission table.
    permission, _ = Permission.objects.get_or_create(
        codename="govern_platform",
        content_type=ContentType.objects.get_for_model(Team),
        defaults={"name": "Govern the platform"},
    )
    user.user_permissions.add(permission)
    return type(user).objects.get(pk=user.pk)


def restart_audit_numbers() -> None:
    """Audit rows are numbered by a PostgreSQL sequence, which a test's rollback does not rewind: tests
    that name rows by number start it again at 1 (SQLite counts in a row the rollback resets)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval('policies_auditevent_sequence_seq', 1, false)")
