"""``@reactive``: mark a ViewSet or a view method as observable.

    @reactive
    class TaskViewSet(viewsets.ModelViewSet): ...          # observes list

    class TaskViewSet(viewsets.ModelViewSet):
        @reactive(dependencies=["auth.User"])
        def retrieve(self, request, *args, **kwargs): ...

        @reactive(primary_key="slug")
        @action(detail=False)
        def recent(self, request): ...

Without ``?observe=<subscriber id>`` a decorated view answers exactly as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from django.apps import apps
from django.core.signals import setting_changed
from rest_framework.viewsets import ViewSetMixin

from .exceptions import ConfigurationError
from .options import ATTRIBUTE, ReactiveOptions
from .spec import OBSERVE_PARAM
from .subscriptions import observe

__all__ = ["reactive"]

_T = TypeVar("_T")

_USAGE = (
    "Use @reactive on a ViewSet class or on a view method, e.g.\n"
    "    @reactive\n"
    "    class TaskViewSet(viewsets.ModelViewSet): ...\n"
    "or\n"
    "    @reactive(primary_key='id')\n"
    "    def list(self, request, *args, **kwargs): ..."
)


@overload
def reactive(target: _T) -> _T: ...


@overload
def reactive(
    *,
    dependencies: Iterable[Any] | None = None,
    primary_key: str | None = None,
    per_user: bool = True,
    poll_interval: float | None = None,
) -> Callable[[_T], _T]: ...


def reactive(
    target: Any = None,
    *,
    dependencies: Iterable[Any] | None = None,
    primary_key: str | None = None,
    per_user: bool = True,
    poll_interval: float | None = None,
) -> Any:
    """Make a ViewSet's ``list``, or one view method, observable over WebSockets.

    ``dependencies``: extra models or tables whose writes re-evaluate the view.
    ``primary_key``: the item field that identifies rows (default: the model's pk).
    ``per_user``: False shares one observer among users; the result must not
    depend on the user (permissions are still checked on each subscribe).
    ``poll_interval``: seconds; ``celery beat`` re-evaluates the view this often
    while it has subscribers (data that changes outside the database).
    """
    if dependencies is not None and isinstance(dependencies, (str, bytes)):
        raise TypeError("dependencies must be a list, e.g. dependencies=['app.Model'].")
    if primary_key is not None and not isinstance(primary_key, str):
        raise TypeError("primary_key must be the name of a field, e.g. primary_key='id'.")
    if not isinstance(per_user, bool):
        raise TypeError("per_user must be True or False.")
    _check_poll_interval(poll_interval, dependencies)
    options = ReactiveOptions(tuple(dependencies or ()), primary_key, per_user, poll_interval)
    if target is None:
        return functools.partial(_apply, options=options)
    return _apply(target, options=options)


def _check_poll_interval(poll_interval: Any, dependencies: Any) -> None:
    if poll_interval is None:
        return
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)):
        raise TypeError("poll_interval must be a number of seconds, e.g. poll_interval=5.")
    if poll_interval < 1:
        # Beat runs the poll task once a second; a shorter interval could not be kept.
        raise ValueError("poll_interval must be at least 1 second (beat polls once a second).")
    if dependencies:
        raise TypeError(
            "@reactive takes dependencies= or poll_interval=, not both: dependencies= "
            "re-evaluates on writes to those tables, poll_interval= on a timer for data "
            "that changes outside the database. Tables the view reads are followed "
            "either way. Use @reactive(poll_interval=5) or @reactive(dependencies=[...])."
        )


def _apply(target: Any, *, options: ReactiveOptions) -> Any:
    if isinstance(target, type):
        return _decorate_viewset(target, options)
    if callable(target) and not isinstance(target, (staticmethod, classmethod)):
        return _decorate_method(target, options)
    raise TypeError(f"@reactive cannot decorate {target!r}. {_USAGE}")


def _decorate_viewset(cls: type, options: ReactiveOptions) -> type:
    if not issubclass(cls, ViewSetMixin) or not callable(getattr(cls, "list", None)):
        raise TypeError(
            f"@reactive on a class needs a ViewSet with a list action; "
            f"{cls.__name__} is not one. {_USAGE}"
        )
    method = cls.list  # type: ignore[attr-defined]
    # A subclass of a reactive ViewSet may be decorated again with its own options.
    method = getattr(method, "__wrapped__", method) if _is_reactive(method) else method
    cls.list = _decorate_method(method, options)  # type: ignore[attr-defined]
    return cls


def _decorate_method(method: Callable[..., Any], options: ReactiveOptions) -> Callable[..., Any]:
    if _is_reactive(method):
        raise TypeError(f"{method.__qualname__} is already @reactive; apply it once.")

    @functools.wraps(method)
    def observed(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if OBSERVE_PARAM not in request.query_params:
            return method(self, request, *args, **kwargs)
        if not _app_installed():
            # Its signals and checks come with the app: without it no push would ever arrive.
            raise ConfigurationError(
                f"{type(self).__name__} is @reactive but 'reactive_celery' is not in "
                "INSTALLED_APPS, so no change would ever be pushed: add 'reactive_celery' "
                "to INSTALLED_APPS."
            )
        return observe(self, request, method, options, args, kwargs)

    setattr(observed, ATTRIBUTE, options)
    return observed


def _is_reactive(method: Any) -> bool:
    return getattr(method, ATTRIBUTE, None) is not None


@functools.lru_cache(maxsize=1)
def _app_installed() -> bool:
    # Asked at the first observing request, when the app registry is surely ready.
    return apps.is_installed("reactive_celery")


def _forget_installed(*, setting: str, **kwargs: Any) -> None:
    if setting == "INSTALLED_APPS":
        _app_installed.cache_clear()


setting_changed.connect(_forget_installed)
