from django.db import models


class TokenScope(models.TextChoices):
    READ = "read", "Read: list and inspect"
    WRITE = "write", "Write: drafts, changes and rollouts (implies read)"
