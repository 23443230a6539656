from django.core.validators import RegexValidator
from django.db import models

from policies.choices import ClusterAuth, ForeignControllerPolicy
from policies.fields import EncryptedTextField

dns_label = RegexValidator(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "lower-case letters, digits and '-' only")


class Environment(models.Model):
    """A target cluster (dev, staging, prod, ...) and how to reach it and its metrics."""

    name = models.CharField(max_length=63, unique=True, validators=[dns_label])
    display_name = models.CharField(max_length=100, blank=True)
    order = models.PositiveIntegerField(default=0, help_text="Promotion order: changes move to the next higher one.")
    is_production = models.BooleanField(default=False)

    auth_mode = models.CharField(max_length=20, choices=ClusterAuth.choices, default=ClusterAuth.TOKEN)
    api_url = models.URLField(blank=True, help_text="Kubernetes API server URL (token mode).")
    api_token = EncryptedTextField(blank=True, help_text="Bearer token, encrypted at rest.")
    ca_certificate = models.TextField(blank=True, help_text="PEM bundle to verify the API server.")
    verify_tls = models.BooleanField(default=True)
    kubeconfig_path = models.CharField(max_length=500, blank=True)
    kubeconfig_context = models.CharField(max_length=200, blank=True)
    prometheus_url = models.URLField(blank=True)
    foreign_controllers = models.CharField(
        max_length=10,
        choices=ForeignControllerPolicy.choices,
        default=ForeignControllerPolicy.WARN,
        help_text="When a live object is managed by Argo CD, Flux or Helm (which will revert Meshgate's write): "
        "refuse the change, or go ahead and warn.",
    )
    promotion_overrides = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per-policy patches applied when a change is promoted into this environment: "
        '{"Kind/namespace/name": {JSON merge patch}}, e.g. {"DestinationRule/bookinfo/reviews": '
        '{"spec": {"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}}.',
    )
    metrics_cluster_label = models.CharField(
        max_length=100,
        blank=True,
        default="destination_cluster",
        validators=[RegexValidator(r"^[a-zA-Z_][a-zA-Z0-9_]*$", "a Prometheus label name")],
        help_text="The metrics label naming the cluster (Istio: destination_cluster); empty: queries "
        "are not scoped (one Prometheus per cluster).",
    )
    metrics_cluster = models.CharField(
        max_length=200, blank=True, help_text="The cluster's value of that label; empty: the environment's name."
    )

    cluster_reachable = models.BooleanField(null=True, editable=False)
    cluster_version = models.CharField(max_length=100, blank=True, editable=False)
    cluster_error = models.TextField(blank=True, editable=False)
    cluster_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_import_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.display_name or self.name

    def metrics_scope(self) -> dict[str, str]:
        """The label matchers every analysis query of this environment adds, e.g.
        ``{"destination_cluster": "staging"}`` (another cluster's traffic is never read)."""
        if not self.metrics_cluster_label:
            return {}
        return {self.metrics_cluster_label: self.metrics_cluster or self.name}
