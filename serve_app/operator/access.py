"""Who is calling the operator routes, and what they may see.

With auth off everyone is an admin. With auth on, the owners named in ``auth_admin_owners``
are admins: the fleet, system and whole-event-log routes need one (403 otherwise), and they see
every workspace; any other owner sees only the workspaces it created and the events of its own
threads, and another owner's are 404s, as for threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from serve_app.auth import current_owner
from serve_app.context import AppContext
from serve_app.errors import ApiError


class Forbidden(ApiError):
    status_code = 403


@dataclass(frozen=True)
class Caller:
    owner: str | None
    """None when auth is off."""
    admin: bool

    @property
    def scope(self) -> str | None:
        """The owner to scope rows to; None: every row (an admin, or auth off)."""
        return None if self.admin else self.owner


def context(request: Request) -> AppContext:
    return request.app.state.context


async def current_caller(request: Request, owner: Annotated[str | None, Depends(current_owner)]) -> Caller:
    if owner is None:
        return Caller(owner=None, admin=True)
    return Caller(owner=owner, admin=owner in context(request).settings.auth_admin_owners)


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.admin:
        raise Forbidden(f"this route needs an admin key: owner {caller.owner!r} is not in the "
                        "auth_admin_owners setting")
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
AdminDep = Annotated[Caller, Depends(admin_caller)]
