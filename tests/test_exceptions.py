"""The exception hierarchy: one base class, drawn in the module's docstring."""

import inspect
import re

from rest_framework.exceptions import APIException

from reactive_celery import exceptions
from reactive_celery.exceptions import ReactiveError, Refused, StoreUnavailable


def classes() -> dict[str, type]:
    return {name: getattr(exceptions, name) for name in exceptions.__all__}


def drawn_tree() -> dict[str, str | None]:
    """Each class drawn in the docstring, mapped to the class above it (None: the root)."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in exceptions.__doc__.splitlines():
        match = re.match(r"^([ │├└─]*)([A-Z]\w+)(\s|$)", line)
        if not match or match.group(2) not in exceptions.__all__:
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return parents


def test_every_exception_subclasses_reactive_error():
    for name, cls in classes().items():
        assert inspect.isclass(cls) and issubclass(cls, ReactiveError), name


def test_the_docstring_draws_every_class_under_its_real_parent():
    drawn = drawn_tree()
    assert set(drawn) == set(exceptions.__all__)
    assert drawn["ReactiveError"] is None
    for name, parent in drawn.items():
        if parent is None:
            continue
        bases = [base.__name__ for base in classes()[name].__bases__]
        assert parent in bases, f"{name} is drawn under {parent}, subclasses {bases}"
        # The nearest reactive_celery base is the one drawn.
        own = [base for base in bases if base in exceptions.__all__]
        assert own == [parent], name


def test_refused_carries_its_code_and_message():
    refused = Refused("not_found", "No view answers /x/.")
    assert (refused.code, refused.message, str(refused)) == (
        "not_found",
        "No view answers /x/.",
        "No view answers /x/.",
    )


def test_store_unavailable_is_a_503_for_drf():
    assert issubclass(StoreUnavailable, APIException)
    error = StoreUnavailable()
    assert error.status_code == 503
    assert error.get_codes() == "reactive_unavailable"
    assert "unavailable" in str(error.detail)
