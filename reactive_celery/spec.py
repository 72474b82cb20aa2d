"""Observer specs: the JSON description of one observed view call.

A spec names everything needed to repeat the call in a worker: the view, its
action, the request path and query, the URL kwargs and the user it runs as.
Its sha256 is the observer id, so identical subscriptions share one observer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

__all__ = ["OBSERVE_PARAM", "ObserverSpec"]

#: Query parameter that turns a GET into a subscription.
OBSERVE_PARAM = "observe"


@dataclass(frozen=True)
class ObserverSpec:
    """One observed call; immutable, JSON round-trippable."""

    view: str
    action: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    host: str = ""
    secure: bool = False
    primary_key: str = "id"

    @classmethod
    def build(
        cls,
        *,
        view: str,
        action: str,
        path: str,
        query: list[tuple[str, str]],
        kwargs: dict[str, Any],
        user: Any,
        host: str,
        secure: bool,
        primary_key: str,
    ) -> ObserverSpec:
        """Normalise one request into a spec: sorted query, string kwargs, no observe param."""
        return cls(
            view=view,
            action=action,
            path=path,
            query=tuple(sorted((k, v) for k, v in query if k != OBSERVE_PARAM)),
            kwargs=tuple(sorted((str(k), str(v)) for k, v in kwargs.items())),
            user=None if user is None else str(user),
            host=host,
            secure=secure,
            primary_key=primary_key,
        )

    def to_json(self) -> str:
        """Canonical JSON; equal specs give equal strings."""
        # Not asdict(): it deep-copies every pair of the query and kwargs first.
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ObserverSpec:
        """Rebuild a spec stored by ``to_json``."""
        data = json.loads(text)
        data["query"] = tuple(tuple(pair) for pair in data["query"])
        data["kwargs"] = tuple(tuple(pair) for pair in data["kwargs"])
        return cls(**data)

    @cached_property
    def id(self) -> str:
        """The observer id: sha256 of the canonical JSON (a subscribe asks for it often)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def query_string(self) -> str:
        """The query, url-encoded, without the observe parameter."""
        return urlencode(self.query)
