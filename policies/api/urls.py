from django.urls import path
from rest_framework.routers import DefaultRouter

from policies.api import (
    approval_rules,
    change_events,
    changes,
    drafts,
    drift,
    notifications,
    promotion_overrides,
    rollout_options,
    rollouts,
    service_accounts,
    teams,
    views,
)
from portal import api_views

app_name = "api"
router = DefaultRouter()
router.register("environments", views.EnvironmentViewSet, basename="environment")
router.register("teams", views.TeamViewSet, basename="team")
router.register("policies", views.PolicyViewSet, basename="policy")
router.register(r"policies/(?P<policy_id>[^/.]+)/revisions", views.PolicyRevisionViewSet, basename="policy-revision")
router.register("tokens", api_views.TokenViewSet, basename="token")
router.register("drafts", drafts.DraftViewSet, basename="draft")
router.register("changes", changes.ChangeViewSet, basename="change")
router.register("rollouts", rollouts.RolloutViewSet, basename="rollout")
router.register("channels", notifications.ChannelViewSet, basename="channel")
router.register("service-accounts", service_accounts.ServiceAccountViewSet, basename="service-account")
router.register("approval-rules", approval_rules.ApprovalRuleViewSet, basename="approval-rule")

urlpatterns = [
    path("me/", api_views.MeView.as_view(), name="me"),
    path("validate", drafts.ValidateView.as_view(), name="validate"),
    # a team's members (the team itself is read-only under `teams/`)
    path("teams/<slug:slug>/members/", teams.TeamMembersView.as_view(), name="team-members"),
    path("teams/<slug:slug>/members/<str:username>/", teams.TeamMemberView.as_view(), name="team-member"),
    *router.urls,
    # a policy's drift and the two ways out of it
    path("policies/<int:pk>/drift/", drift.PolicyDriftView.as_view(), name="policy-drift"),
    path("policies/<int:pk>/drift/adopt/", drift.PolicyDriftAdoptView.as_view(), name="policy-drift-adopt"),
    path("policies/<int:pk>/drift/reapply/", drift.PolicyDriftReapplyView.as_view(), name="policy-drift-reapply"),
    # a policy's per-environment promotion overrides
    path("policies/<int:pk>/overrides/", promotion_overrides.PolicyOverridesView.as_view(), name="policy-overrides"),
    path(
        "policies/<int:pk>/overrides/<str:environment>/",
        promotion_overrides.PolicyOverrideView.as_view(),
        name="policy-override",
    ),
    # change transitions: one small view each
    path("changes/<int:pk>/submit/", changes.ChangeSubmitView.as_view(), name="change-submit"),
    path("changes/<int:pk>/approve/", changes.ChangeApproveView.as_view(), name="change-approve"),
    path(
        "changes/<int:pk>/request-changes/", changes.ChangeRequestChangesView.as_view(), name="change-request-changes"
    ),
    path("changes/<int:pk>/comment/", changes.ChangeCommentView.as_view(), name="change-comment"),
    path("changes/<int:pk>/reject/", changes.ChangeRejectView.as_view(), name="change-reject"),
    path("changes/<int:pk>/rebase/", changes.ChangeRebaseView.as_view(), name="change-rebase"),
    path("changes/<int:pk>/schedule/", changes.ChangeScheduleView.as_view(), name="change-schedule"),
    path("changes/<int:pk>/promote/", changes.ChangePromoteView.as_view(), name="change-promote"),
    path("changes/<int:pk>/items/", changes.ChangeReplaceItemsView.as_view(), name="change-replace-items"),
    path("changes/<int:pk>/withdraw/", changes.ChangeWithdrawView.as_view(), name="change-withdraw"),
    path("changes/<int:pk>/retry/", changes.ChangeRetryView.as_view(), name="change-retry"),
    path("changes/<int:pk>/refresh-plan/", changes.ChangeRefreshPlanView.as_view(), name="change-refresh-plan"),
    path("changes/<int:pk>/status/", changes.ChangeStatusView.as_view(), name="change-status"),
    path("changes/<int:pk>/events/stream/", change_events.ChangeEventStreamView.as_view(), name="change-events-stream"),
    path(
        "changes/<int:pk>/rollout-options/",
        rollout_options.ChangeRolloutOptionsView.as_view(),
        name="change-rollout-options",
    ),
    # rollout controls: one small view each
    path("rollouts/<int:pk>/pause/", rollouts.RolloutPauseView.as_view(), name="rollout-pause"),
    path("rollouts/<int:pk>/resume/", rollouts.RolloutResumeView.as_view(), name="rollout-resume"),
    path(
        "rollouts/<int:pk>/continue-on-live/",
        rollouts.RolloutContinueOnLiveView.as_view(),
        name="rollout-continue-on-live",
    ),
    path("rollouts/<int:pk>/abort/", rollouts.RolloutAbortView.as_view(), name="rollout-abort"),
    path("rollouts/<int:pk>/promote/", rollouts.RolloutPromoteView.as_view(), name="rollout-promote"),
    path("rollouts/<int:pk>/confirm-gate/", rollouts.RolloutConfirmGateView.as_view(), name="rollout-confirm-gate"),
]
