"""Guardrails, change windows and notifications, included at the site root (namespace "governance")."""
from django.urls import path
from django.views.generic import RedirectView

from policies import governance_views as views

app_name = "governance"
urlpatterns = [
    path("governance/", RedirectView.as_view(pattern_name="governance:guardrail-list", permanent=False), name="home"),
    path("governance/guardrails/", views.guardrail_list, name="guardrail-list"),
    path("governance/guardrails/new/", views.guardrail_create, name="guardrail-create"),
    path("governance/guardrails/<int:pk>/", views.guardrail_edit, name="guardrail-edit"),
    path("governance/guardrails/<int:pk>/test/", views.guardrail_test, name="guardrail-test"),
    path("governance/windows/", views.windows, name="windows"),
    path("governance/notifications/", views.notifications, name="notifications"),
    path("governance/notifications/preferences/", views.preferences, name="preferences"),
    path("governance/notifications/channels/new/", views.channel_create, name="channel-create"),
    path("governance/notifications/channels/<int:pk>/", views.channel_edit, name="channel-edit"),
    path("governance/notifications/channels/<int:pk>/delete/", views.channel_delete, name="channel-delete"),
    path("governance/notifications/channels/<int:pk>/test/", views.channel_test, name="channel-test"),
]
