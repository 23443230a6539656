"""Rollout pages (namespace "rollouts")."""
from django.urls import path

from policies import rollout_views as views

app_name = "rollouts"
urlpatterns = [
    path("rollouts/", views.rollout_list, name="list"),
    path("rollouts/<int:pk>/", views.rollout_detail, name="detail"),
    path("rollouts/<int:pk>/status/", views.rollout_status, name="status"),
    path("rollouts/<int:pk>/data.json", views.rollout_data, name="data"),
    path("rollouts/<int:pk>/<slug:action>/", views.rollout_control, name="control"),
]
