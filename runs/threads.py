"""Thread ids: every thread is a UUID, as in the LangGraph API, whoever drives it.

A thread the fabric knew by another name before the run engine hosted every run (a name such as
``thread-1``) was given the id ``named_thread_id(name)`` by migration ``fabric/0002``, which also
keeps the name in the thread's metadata (``fabric_thread_name``).
"""

from __future__ import annotations

import uuid

NAMED_THREADS = uuid.UUID("5d0c9a4e-2b7f-4d1e-9c3a-7f6e1b2a8c40")
"""The namespace of ``named_thread_id`` (a UUID v3: MD5, which Postgres computes without extensions)."""


class InvalidThreadId(ValueError):
    """A thread id that is not a UUID."""


def thread_id_of(value: object) -> str:
    """``value`` as a canonical thread id (the UUID's lowercase text), or InvalidThreadId."""
    if not value:
        raise InvalidThreadId("a thread_id is needed")
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidThreadId(f"a thread_id is a UUID, not {str(value)[:80]!r}") from None


def named_thread_id(name: str) -> str:
    """The id migration fabric/0002 gave the thread the fabric knew as ``name``."""
    return str(uuid.uuid3(NAMED_THREADS, name))
