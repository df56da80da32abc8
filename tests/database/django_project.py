"""A real django-tenants project (Django and django-tenants from PyPI), written into a folder: a tenant model
(``customers.Client``), a tenant app (``shop.Item``), a management command that lists a tenant's items, and
a pinstripe config with ``tenants = "django-tenants"``. Used by the tests and by benchmarks/database.py."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

FILES = {
    "manage.py": '''
        import os, sys
        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
            from django.core.management import execute_from_command_line
            execute_from_command_line(sys.argv)
    ''',
    "proj/__init__.py": "",
    "proj/urls.py": "urlpatterns = []\n",
    "proj/settings.py": '''
        import os
        SECRET_KEY = "test-only"
        DEBUG = False
        USE_TZ = True
        ROOT_URLCONF = "proj.urls"
        SHARED_APPS = ["django_tenants", "customers", "django.contrib.contenttypes",
                       "pinstripe_jobs.database.django_app"]  # manage.py pinstripe
        TENANT_APPS = ["django.contrib.contenttypes", "shop"]
        INSTALLED_APPS = SHARED_APPS + [a for a in TENANT_APPS if a not in SHARED_APPS]
        TENANT_MODEL = "customers.Client"
        TENANT_DOMAIN_MODEL = "customers.Domain"
        DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
        DATABASES = {"default": {
            "ENGINE": "django_tenants.postgresql_backend", "NAME": os.environ["PST_DJANGO_DB"],
            "USER": os.environ.get("PST_DJANGO_USER", "postgres"),
            "HOST": os.environ.get("PST_DJANGO_HOST", "127.0.0.1"),
            "PORT": os.environ.get("PST_DJANGO_PORT", "5432"),
            "CONN_MAX_AGE": None if os.environ.get("PST_DJANGO_PERSISTENT") else 0,
        }}
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        SILENCED_SYSTEM_CHECKS = ["django_tenants.W001"]
    ''',
    "customers/__init__.py": "",
    "customers/models.py": '''
        from django.db import models
        from django_tenants.models import DomainMixin, TenantMixin

        class Client(TenantMixin):
            name = models.CharField(max_length=100)
            plan = models.CharField(max_length=20, default="free")
            auto_create_schema = True

        class Domain(DomainMixin):
            pass
    ''',
    "shop/__init__.py": "",
    "shop/models.py": '''
        from django.db import models

        class Item(models.Model):
            name = models.CharField(max_length=100)
    ''',
    "shop/management/__init__.py": "",
    "shop/management/commands/__init__.py": "",
    "shop/management/commands/list_items.py": '''
        from django.core.management.base import BaseCommand
        from django.db import connection

        from shop.models import Item

        class Command(BaseCommand):
            def handle(self, *args, **options):
                names = sorted(Item.objects.values_list("name", flat=True))
                self.stdout.write(f"ITEMS {connection.schema_name} {','.join(names)}")
    ''',
    "create_tenants.py": '''
        """python create_tenants.py N [fast]: the public tenant and N tenants t0..t{N-1}, tenant i with i % 5 + 1
        items. "fast" creates the schemas with SQL instead of running the migrations per schema."""
        import os, sys
        import django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
        django.setup()
        from django.db import connection
        from django_tenants.utils import schema_context
        from customers.models import Client
        from shop.models import Item

        count, fast = int(sys.argv[1]), sys.argv[2:] == ["fast"]
        Client(schema_name="public", name="public").save()
        if fast:
            Client.objects.bulk_create([Client(schema_name=f"t{i}", name=f"Tenant {i}") for i in range(count)])
            with connection.cursor() as cur:
                for i in range(count):
                    cur.execute(f'CREATE SCHEMA "t{i}"')
                    cur.execute(f'CREATE TABLE "t{i}".shop_item (id bigserial PRIMARY KEY, name varchar(100))')
                    cur.execute(f'INSERT INTO "t{i}".shop_item (name) SELECT %s || g FROM generate_series(1, %s) g',
                                [f"item{i}-", i % 5 + 1])
        else:
            for i in range(count):
                client = Client(schema_name=f"t{i}", name=f"Tenant {i}", plan="pro" if i % 2 else "free")
                client.save()
                with schema_context(client.schema_name):
                    Item.objects.bulk_create([Item(name=f"item{i}-{k + 1}") for k in range(i % 5 + 1)])
    ''',
    "pinstripe.toml": '''
        jobs_dir = "jobs"
        tenants = "django-tenants"
        django_settings = "proj.settings"
    ''',
}


def env_for(database: str, persistent: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PINSTRIPE_", "DJANGO_"))}
    env["PST_DJANGO_DB"] = database
    if persistent:
        env["PST_DJANGO_PERSISTENT"] = "1"
    return env


def build(root: Path, database: str, tenants: int, fast: bool = False, persistent: bool = False) -> dict[str, str]:
    """Write the project, create its migrations and tables, and ``tenants`` tenants. Returns its environment."""
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    (root / "jobs").mkdir(exist_ok=True)
    env = env_for(database, persistent)

    def manage(*args: str) -> None:
        done = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    manage("manage.py", "makemigrations", "customers", "shop")
    manage("manage.py", "migrate_schemas", "--shared")
    manage("create_tenants.py", str(tenants), *(["fast"] if fast else []))
    return env
