"""A Django app so that ``python manage.py pinstripe ...`` works: add "pinstripe_jobs.database.django_app" to
INSTALLED_APPS. The command is the ``pinstripe`` CLI, run inside the project (Django already set up)."""
