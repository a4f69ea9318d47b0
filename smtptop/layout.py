"""How the type checker sees a :class:`struct.Struct`: its fields typed by format.

A module of its own, imported only while type checking, because mypyc compiles the modules
that use it and does not compile a class defined under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

_Fields = TypeVar("_Fields", bound=tuple[object, ...], covariant=True)


class Layout(Protocol[_Fields]):
    """A struct whose ``unpack_from`` returns ``_Fields``."""

    @property
    def size(self) -> int: ...

    def unpack_from(self, buffer: bytes, offset: int = 0, /) -> _Fields: ...
