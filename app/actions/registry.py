"""The action registry: the built-ins plus plug-ins from the `runbookd.actions` entry points."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points

from app.actions import builtin
from app.actions.base import Action, ActionParams, Plannable

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "runbookd.actions"


class UnknownAction(KeyError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.message = f"unknown action {name!r}; known actions: {', '.join(sorted(known))}"

    def __str__(self) -> str:
        return self.message


class ActionSpecs(dict[str, type[ActionParams]]):
    """Action name to its Params model, for lint and the catalog loader; `unplanned` names
    the actions without a `plan()`, whose approvers see only the rendered call."""

    def __init__(self, specs: dict[str, type[ActionParams]], *,
                 unplanned: Iterable[str] = ()) -> None:
        super().__init__(specs)
        self.unplanned = frozenset(unplanned)


class ActionRegistry:
    """Action name to action instance."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(self, action: Action) -> None:
        if not isinstance(action, Action):
            raise TypeError(f"{action!r} does not implement the Action protocol")
        self._actions[action.name] = action

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            raise UnknownAction(name, list(self._actions)) from None

    def names(self) -> list[str]:
        return sorted(self._actions)

    def specs(self) -> ActionSpecs:
        """Action name to its Params model, for lint and the catalog loader."""
        return ActionSpecs({name: action.Params for name, action in self._actions.items()},
                           unplanned=[name for name, action in self._actions.items()
                                      if not isinstance(action, Plannable)])

    def __contains__(self, name: str) -> bool:
        return name in self._actions

    def load_entry_points(self) -> None:
        """Add third-party actions; a broken plug-in is logged and skipped, never fatal."""
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
                self.register(loaded() if isinstance(loaded, type) else loaded)
            except Exception:
                log.exception("could not load action plug-in %s", ep.name)


def default_registry() -> ActionRegistry:
    """The built-in actions plus installed plug-ins."""
    registry = ActionRegistry()
    for action in builtin.all_actions():
        registry.register(action)
    registry.load_entry_points()
    return registry


__all__ = ["ActionRegistry", "ActionSpecs", "UnknownAction", "default_registry"]
