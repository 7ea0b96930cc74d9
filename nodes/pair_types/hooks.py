"""Forward hooks that come and go with a model: installed and removed as a ModelPatcher injection."""

from __future__ import annotations

import threading
from typing import Callable, Optional


class OwnedHooks:
    """Forward hooks on named modules. The injection is shared by clones of a model (ModelPatcher.
    clone copies the injection list); the hooks belong to the patcher that injected them, so a stale
    clone ejecting (e.g. when garbage-collected) cannot strip a live model's hooks."""

    def __init__(self, hooks: dict[str, Callable], with_kwargs: bool = False):
        self.hooks = hooks
        self.with_kwargs = with_kwargs
        self._handles: list = []
        self._owner: Optional[int] = None
        self._lock = threading.Lock()

    def inject(self, patcher) -> None:
        with self._lock:
            if self._handles:
                if self._owner == id(patcher):
                    return
                self._remove()
            for name, hook in self.hooks.items():
                module = patcher.model.get_submodule(name)
                self._handles.append(module.register_forward_hook(hook, with_kwargs=self.with_kwargs))
            self._owner = id(patcher)

    def eject(self, patcher) -> None:
        with self._lock:
            if self._owner == id(patcher):
                self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._owner = [], None
