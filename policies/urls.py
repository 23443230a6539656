from django.urls import path

from policies import change_views, draft_views, views

app_name = "policies"
urlpatterns = [
    path("", change_views.dashboard, name="home"),  # the dashboard (policies/change_views.py)
    path("policies/", views.catalog, name="catalog"),
    path("policies/<int:pk>/", views.policy_detail, name="policy-detail"),
    path("policies/<int:pk>/revisions/<int:number>/", views.revision_detail, name="revision-detail"),
    path("policies/<int:pk>/drift/adopt/", views.policy_drift_adopt, name="policy-drift-adopt"),
    path("policies/<int:pk>/drift/reapply/", views.policy_drift_reapply, name="policy-drift-reapply"),
    path("environments/", views.environments, name="environments"),
    path("environments/<int:pk>/import/", views.environment_import, name="environment-import"),
    path("policies/<int:pk>/delete-draft/", draft_views.policy_delete_draft, name="policy-delete-draft"),
    path("drafts/", draft_views.drafts, name="drafts"),
    path("drafts/upload/", draft_views.draft_upload, name="draft-upload"),
    path("drafts/<int:pk>/", draft_views.draft_detail, name="draft-detail"),
    path("drafts/<int:pk>/discard/", draft_views.draft_discard_view, name="draft-discard"),
]
