"""Helpers that several tests of the hosts use."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest


def _run_switching_often(threads: list[threading.Thread]) -> None:
    """Start the threads and wait for them, switching threads as often as CPython allows."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)


@pytest.fixture
def run_switching_often() -> Callable[[list[threading.Thread]], None]:
    """Start threads and wait for them, switching threads as often as CPython allows."""
    return _run_switching_often


@contextmanager
def _slot_as_property(cls: type, name: str) -> Iterator[list[int]]:
    """Put a property that reads and writes the slot ``name`` of ``cls`` in its
    place, and the slot back at the end; yields a list with an item per read."""
    member = cls.__dict__[name]
    reads: list[int] = []

    def read(self: Any) -> Any:
        reads.append(1)
        return member.__get__(self, type(self))

    setattr(cls, name, property(read, member.__set__))
    try:
        yield reads
    finally:
        setattr(cls, name, member)


@pytest.fixture
def slot_as_property() -> Callable[[type, str], AbstractContextManager[list[int]]]:
    """``with slot_as_property(cls, name) as reads``: see _slot_as_property."""
    return _slot_as_property
