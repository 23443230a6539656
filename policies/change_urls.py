"""Change requests, the dashboard, approval rules and the audit log (namespace "changes")."""
from django.urls import path

from policies import audit_views, change_views as views, rollout_plan_views

app_name = "changes"
urlpatterns = [
    path("changes/", views.change_list, name="list"),
    path("changes/new/", views.change_create, name="create"),
    path("changes/<int:pk>/", views.change_detail, name="detail"),
    path("changes/<int:pk>/submit/", views.change_submit, name="submit"),
    path("changes/<int:pk>/approve/", views.change_approve, name="approve"),
    path("changes/<int:pk>/request-changes/", views.change_request_changes, name="request-changes"),
    path("changes/<int:pk>/reject/", views.change_reject, name="reject"),
    path("changes/<int:pk>/rebase/", views.change_rebase, name="rebase"),
    path("changes/<int:pk>/schedule/", views.change_schedule, name="schedule"),
    path("changes/<int:pk>/promote/", views.change_promote, name="promote"),
    path("changes/<int:pk>/refresh-plan/", views.change_refresh_plan, name="refresh-plan"),
    path("changes/<int:pk>/withdraw/", views.change_withdraw, name="withdraw"),
    path("changes/<int:pk>/retry/", views.change_retry, name="retry"),
    path("changes/<int:pk>/replace-items/", views.change_replace_items, name="replace-items"),
    path("changes/<int:pk>/plan/", views.change_plan_status, name="plan-status"),
    path("changes/<int:pk>/rollout-options/", rollout_plan_views.change_rollout_options, name="rollout-options"),
    path("changes/<int:pk>/comment/", views.change_comment, name="comment"),
    path("changes/<int:pk>/comments/<int:comment_pk>/resolve/", views.comment_resolve, name="comment-resolve"),
    path("changes/<int:pk>/items/<int:item_pk>/edit/", views.item_edit, name="item-edit"),
    path("changes/<int:pk>/items/<int:item_pk>/comment-form/", views.item_comment_form, name="item-comment-form"),
    path("changes/<int:pk>/items/<int:item_pk>/base-diff/", views.item_base_diff, name="item-base-diff"),
    path("changes/<int:pk>/items/<int:item_pk>/override/", views.item_guardrail_override, name="item-override"),
    path("approval-rules/", views.approval_rules, name="approval-rules"),
    path("approval-rules/<int:rule_pk>/delete/", views.approval_rule_delete, name="approval-rule-delete"),
    path("audit/", audit_views.audit_log, name="audit"),
    path("audit/export.<str:fmt>", audit_views.audit_export, name="audit-export"),
]
