"""Who is calling. Until auth is configured every request is anonymous (owner None).

Routes take ``owner: str | None = Depends(current_owner)``, store it on what they create,
and, when it is not None, only show and touch rows of that owner.
"""

from __future__ import annotations

from fastapi import Request


async def current_owner(request: Request) -> str | None:
    return getattr(request.state, "owner", None)
