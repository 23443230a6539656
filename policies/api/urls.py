from django.urls import path
from rest_framework.routers import DefaultRouter

from policies.api import drafts, views
from portal import api_views

app_name = "api"
router = DefaultRouter()
router.register("environments", views.EnvironmentViewSet, basename="environment")
router.register("teams", views.TeamViewSet, basename="team")
router.register("policies", views.PolicyViewSet, basename="policy")
router.register(r"policies/(?P<policy_id>[^/.]+)/revisions", views.PolicyRevisionViewSet, basename="policy-revision")
router.register("tokens", api_views.TokenViewSet, basename="token")
router.register("drafts", drafts.DraftViewSet, basename="draft")

urlpatterns = [
    path("me/", api_views.MeView.as_view(), name="me"),
    path("validate", drafts.ValidateView.as_view(), name="validate"),
    *router.urls,
]
