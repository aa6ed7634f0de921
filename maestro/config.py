"""Start-up configuration errors, reported as one line instead of a traceback.

Every entry point (manage.py, the WSGI/ASGI modules, Celery, the web launcher maestro.web) loads settings
through `load_settings_or_exit()`, so an operator who forgot a variable sees which one and how to
fix it, and nothing starts half-configured.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ImproperlyConfigured


class ConfigError(ImproperlyConfigured):
    """A setting is missing or malformed. The message names the variable and the expected form."""


@contextmanager
def config_errors_exit() -> Iterator[None]:
    """A ConfigError raised inside becomes one line on stderr and exit status 2."""
    try:
        yield
    except ConfigError as exc:
        sys.stderr.write(f"maestro: configuration error: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None


def load_settings_or_exit() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "maestro.settings")
    with config_errors_exit():
        importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
