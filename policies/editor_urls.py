"""The YAML editor and the wizards, included at the site root (namespace "editor")."""
from django.urls import path

from policies import editor_views

app_name = "editor"
urlpatterns = [
    path("editor/new/", editor_views.new, name="new"),
    path("editor/policy/<int:pk>/", editor_views.policy_edit, name="policy-edit"),
    path("editor/draft/<int:pk>/", editor_views.draft_edit, name="draft-edit"),
    path("editor/schema/<str:environment>/<str:kind>.json", editor_views.schema, name="schema"),
    path("editor/wizards/", editor_views.wizard_index, name="wizards"),
    path("editor/wizards/<slug:slug>/", editor_views.wizard, name="wizard"),
]
