from django.urls import path
from django.views.generic import RedirectView

from policies import views

app_name = "policies"
urlpatterns = [
    path("", RedirectView.as_view(pattern_name="policies:catalog", permanent=False), name="home"),
    path("policies/", views.catalog, name="catalog"),
    path("policies/<int:pk>/", views.policy_detail, name="policy-detail"),
    path("policies/<int:pk>/revisions/<int:number>/", views.revision_detail, name="revision-detail"),
    path("environments/", views.environments, name="environments"),
    path("environments/<int:pk>/import/", views.environment_import, name="environment-import"),
]
