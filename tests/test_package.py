"""The package's public surface and import-time behaviour."""

import importlib
import pkgutil
import subprocess
import sys

import reactive_celery


def test_package_imports_before_settings_are_configured():
    code = (
        "import sys, reactive_celery; "
        "assert 'django.conf' not in sys.modules and 'celery' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('django', 'celery')))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_lazy_exports_resolve():
    from reactive_celery.decorators import reactive
    from reactive_celery.signals import notify

    assert reactive_celery.reactive is reactive
    assert reactive_celery.notify is notify


def test_every_module_declares_all_and_exports_exist():
    for info in pkgutil.iter_modules(reactive_celery.__path__):
        if info.name in ("apps", "migrations"):
            continue
        module = importlib.import_module(f"reactive_celery.{info.name}")
        assert hasattr(module, "__all__"), info.name
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name}"
