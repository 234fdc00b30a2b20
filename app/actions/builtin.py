"""The list of built-in actions."""

from __future__ import annotations

from app.actions.base import Action
from app.actions.testing import Fail, Noop, Sleep


def all_actions() -> list[Action]:
    return [Noop(), Sleep(), Fail()]
