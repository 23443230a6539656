from django.urls import path

from policies import docs_views

app_name = "docs"
urlpatterns = [
    path("docs/findings/", docs_views.finding_index, name="findings"),
    path("docs/findings/<str:code>/", docs_views.finding_detail, name="finding"),
]
