"""Every page of the portal, one list of routes per feature, each included under its namespace.

Included once at the site root by `portal/urls.py`; route names and URLs are part of the interface
(templates and tests reverse them), so a feature's list only grows.
"""

from django.urls import URLResolver, include, path
from django.views.generic import RedirectView

from policies.views import (
    audit,
    catalog,
    changes,
    docs,
    drafts,
    editor,
    governance,
    promotion_overrides,
    rollouts,
    service_accounts,
    teams,
)

# namespace "policies": the dashboard, the catalog, environments and drafts
catalog_patterns = [
    path("", changes.dashboard, name="home"),  # the dashboard (policies/views/changes.py)
    path("policies/", catalog.catalog, name="catalog"),
    path("policies/<int:pk>/", catalog.policy_detail, name="policy-detail"),
    path("policies/<int:pk>/revisions/<int:number>/", catalog.revision_detail, name="revision-detail"),
    path("policies/<int:pk>/drift/adopt/", catalog.policy_drift_adopt, name="policy-drift-adopt"),
    path("policies/<int:pk>/drift/reapply/", catalog.policy_drift_reapply, name="policy-drift-reapply"),
    path("policies/<int:pk>/overrides/", promotion_overrides.override_list, name="policy-overrides"),
    path("policies/<int:pk>/overrides/save/", promotion_overrides.override_save, name="policy-override-save"),
    path(
        "policies/<int:pk>/overrides/<str:environment>/delete/",
        promotion_overrides.override_delete,
        name="policy-override-delete",
    ),
    path("environments/", catalog.environments, name="environments"),
    path("environments/<int:pk>/import/", catalog.environment_import, name="environment-import"),
    path("policies/<int:pk>/delete-draft/", drafts.policy_delete_draft, name="policy-delete-draft"),
    path("drafts/", drafts.drafts, name="drafts"),
    path("drafts/upload/", drafts.draft_upload, name="draft-upload"),
    path("drafts/<int:pk>/", drafts.draft_detail, name="draft-detail"),
    path("drafts/<int:pk>/discard/", drafts.draft_discard_view, name="draft-discard"),
]

# namespace "editor": the YAML editor and the wizards
editor_patterns = [
    path("editor/new/", editor.new, name="new"),
    path("editor/policy/<int:pk>/", editor.policy_edit, name="policy-edit"),
    path("editor/draft/<int:pk>/", editor.draft_edit, name="draft-edit"),
    path("editor/schema/<str:environment>/<str:kind>.json", editor.schema, name="schema"),
    path("editor/wizards/", editor.wizard_index, name="wizards"),
    path("editor/wizards/<slug:slug>/", editor.wizard, name="wizard"),
]

# namespace "docs": the catalogue of findings
docs_patterns = [
    path("docs/findings/", docs.finding_index, name="findings"),
    path("docs/findings/<str:code>/", docs.finding_detail, name="finding"),
]

# namespace "governance": guardrails, change windows and notifications
governance_patterns = [
    path("governance/", RedirectView.as_view(pattern_name="governance:guardrail-list", permanent=False), name="home"),
    path("governance/guardrails/", governance.guardrail_list, name="guardrail-list"),
    path("governance/guardrails/new/", governance.guardrail_create, name="guardrail-create"),
    path("governance/guardrails/<int:pk>/", governance.guardrail_edit, name="guardrail-edit"),
    path("governance/guardrails/<int:pk>/test/", governance.guardrail_test, name="guardrail-test"),
    path("governance/windows/", governance.windows, name="windows"),
    path("governance/notifications/", governance.notifications, name="notifications"),
    path("governance/notifications/preferences/", governance.preferences, name="preferences"),
    path("governance/notifications/channels/new/", governance.channel_create, name="channel-create"),
    path("governance/notifications/channels/<int:pk>/", governance.channel_edit, name="channel-edit"),
    path("governance/notifications/channels/<int:pk>/delete/", governance.channel_delete, name="channel-delete"),
    path("governance/notifications/channels/<int:pk>/test/", governance.channel_test, name="channel-test"),
]

# namespace "changes": change requests, approval rules and the audit log
change_patterns = [
    path("changes/", changes.change_list, name="list"),
    path("changes/new/", changes.change_create, name="create"),
    path("changes/<int:pk>/", changes.change_detail, name="detail"),
    path("changes/<int:pk>/submit/", changes.change_submit, name="submit"),
    path("changes/<int:pk>/approve/", changes.change_approve, name="approve"),
    path("changes/<int:pk>/request-changes/", changes.change_request_changes, name="request-changes"),
    path("changes/<int:pk>/reject/", changes.change_reject, name="reject"),
    path("changes/<int:pk>/rebase/", changes.change_rebase, name="rebase"),
    path("changes/<int:pk>/schedule/", changes.change_schedule, name="schedule"),
    path("changes/<int:pk>/promote/", changes.change_promote, name="promote"),
    path("changes/<int:pk>/refresh-plan/", changes.change_refresh_plan, name="refresh-plan"),
    path("changes/<int:pk>/withdraw/", changes.change_withdraw, name="withdraw"),
    path("changes/<int:pk>/retry/", changes.change_retry, name="retry"),
    path("changes/<int:pk>/replace-items/", changes.change_replace_items, name="replace-items"),
    path("changes/<int:pk>/plan/", changes.change_plan_status, name="plan-status"),
    path("changes/<int:pk>/rollout-options/", changes.change_rollout_options, name="rollout-options"),
    path("changes/<int:pk>/comment/", changes.change_comment, name="comment"),
    path("changes/<int:pk>/comments/<int:comment_pk>/resolve/", changes.comment_resolve, name="comment-resolve"),
    path("changes/<int:pk>/items/<int:item_pk>/edit/", changes.item_edit, name="item-edit"),
    path("changes/<int:pk>/items/<int:item_pk>/comment-form/", changes.item_comment_form, name="item-comment-form"),
    path("changes/<int:pk>/items/<int:item_pk>/base-diff/", changes.item_base_diff, name="item-base-diff"),
    path("changes/<int:pk>/items/<int:item_pk>/card/", changes.item_card, name="item-card"),
    path("changes/<int:pk>/items/<int:item_pk>/override/", changes.item_guardrail_override, name="item-override"),
    path("approval-rules/", changes.approval_rules, name="approval-rules"),
    path("approval-rules/<int:rule_pk>/delete/", changes.approval_rule_delete, name="approval-rule-delete"),
    path("audit/", audit.audit_log, name="audit"),
    path("audit/export.<str:fmt>", audit.audit_export, name="audit-export"),
]

# namespace "rollouts": rollout pages
rollout_patterns = [
    path("rollouts/", rollouts.rollout_list, name="list"),
    path("rollouts/<int:pk>/", rollouts.rollout_detail, name="detail"),
    path("rollouts/<int:pk>/status/", rollouts.rollout_status, name="status"),
    path("rollouts/<int:pk>/data.json", rollouts.rollout_data, name="data"),
    path("rollouts/<int:pk>/<slug:action>/", rollouts.rollout_control, name="control"),
]

# namespace "service_accounts": a team's pipeline identities and their tokens
service_account_patterns = [
    path("service-accounts/", service_accounts.account_list, name="list"),
    path("service-accounts/<slug:name>/", service_accounts.account_detail, name="detail"),
    path("service-accounts/<slug:name>/tokens/", service_accounts.token_issue, name="token-issue"),
    path("service-accounts/<slug:name>/tokens/<int:pk>/rotate/", service_accounts.token_rotate, name="token-rotate"),
    path("service-accounts/<slug:name>/tokens/<int:pk>/revoke/", service_accounts.token_revoke, name="token-revoke"),
    path("service-accounts/<slug:name>/disable/", service_accounts.account_disable, name="disable"),
]

# namespace "teams": teams and their members
team_patterns = [
    path("teams/", teams.team_list, name="list"),
    path("teams/<slug:slug>/", teams.team_detail, name="detail"),
    path("teams/<slug:slug>/members/", teams.team_member_save, name="member-save"),
    path("teams/<slug:slug>/members/remove/", teams.team_member_remove, name="member-remove"),
]

urlpatterns: list[URLResolver] = [
    path("", include((catalog_patterns, "policies"))),
    path("", include((editor_patterns, "editor"))),
    path("", include((docs_patterns, "docs"))),
    path("", include((governance_patterns, "governance"))),
    path("", include((change_patterns, "changes"))),
    path("", include((rollout_patterns, "rollouts"))),
    path("", include((service_account_patterns, "service_accounts"))),
    path("", include((team_patterns, "teams"))),
]
