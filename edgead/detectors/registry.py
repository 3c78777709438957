"""The detector registry. A detector is one package, ``edgead/detectors/<name>/``, whose
``__init__`` defines a :class:`Detector` subclass: defining it registers it, and the
``edgead fit <name>`` / ``edgead export <name>`` verbs, their options and the contract tests
come from the registry alone (timm's ``@register_model``, Polygraphy's argument groups).

The package's ``__init__`` stays importable without torch (its methods import the model and
export modules when called), so that listing the detectors for ``--help`` is instant.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from edgead.errors import EdgeadError

DETECTORS: dict[str, Detector] = {}
BUILTIN = ("patchcore", "padim", "spade", "efficientad")  # packages; efficientad holds puad too


def apply_options(options: list[Callable], f: Callable) -> Callable:
    """Decorate ``f`` with click option decorators, first one on top."""
    for option in reversed(options):
        f = option(f)
    return f


def option_names(options: list[Callable]) -> list[str]:
    """The parameter names a list of click option decorators defines."""

    def probe() -> None: ...

    return [p.name for p in getattr(apply_options(options, probe), "__click_params__", [])]


class Detector:
    """One detector: its settings, fit, export and command-line options.

    Subclasses set ``name`` (which registers them) and ``summary`` (one line for ``--help``),
    and either name the modules that hold the pieces (imported on first use, so that
    registering needs no torch):

    - ``model_module``: ``fit(config, train, device, quiet, **extra)``, ``rebuild(config,
      state)``, the config class ``config_class``, and optionally ``input_spec`` / ``infer``;
    - ``export_module``: ``export(saved, out, overwrite, **options)``;
    - ``options_module``: lists of click options named in ``fit_option_groups`` and
      ``export_option_groups``, whose names are config fields (fit) or keyword arguments of
      ``export`` (export);

    or override the methods below (the toy detector in the tests does).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    uses_validation: ClassVar[bool] = False  # fit() takes validation=[held-out good paths]
    model_module: ClassVar[str] = ""
    config_class: ClassVar[str] = ""
    export_module: ClassVar[str] = ""
    options_module: ClassVar[str] = ""
    fit_option_groups: ClassVar[tuple[str, ...]] = ("FIT",)
    export_option_groups: ClassVar[tuple[str, ...]] = ("EXPORT",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            DETECTORS[cls.name] = cls()

    # -- what a detector supplies (from its modules, or overridden) -----------------------------
    @staticmethod
    def _module(name: str) -> Any:
        if not name:
            raise NotImplementedError("this detector names no module for it")
        return importlib.import_module(name)

    def _options(self, groups: tuple[str, ...]) -> list[Callable]:
        if not self.options_module:
            return []
        module = self._module(self.options_module)
        return [opt for group in groups for opt in getattr(module, group, [])]

    @property
    def config_cls(self) -> type:
        return getattr(self._module(self.model_module), self.config_class)

    def fit_options(self) -> list[Callable]:
        """The detector's own fit options (the shared ones come from ``detectors.options``)."""
        return self._options(self.fit_option_groups)

    def export_options(self) -> list[Callable]:
        """The detector's own export options (besides --fp16 and --torch-graph)."""
        return self._options(self.export_option_groups)

    def fit(
        self, config: Any, train: list[Path], device: str = "cpu", quiet: bool = False, **extra: Any
    ) -> tuple[Any, dict]:
        model = self._module(self.model_module)
        return model.fit(config, train, device=device, quiet=quiet, **extra)

    def rebuild(self, config: Any, state: dict) -> Any:
        return self._module(self.model_module).rebuild(config, state)

    def input_spec(self, config: Any) -> Any:
        from edgead.components.common import input_spec

        model = self._module(self.model_module) if self.model_module else None
        return getattr(model, "input_spec", input_spec)(config)

    def infer(self, model: Any, batch: Any) -> tuple[Any, Any]:
        """Preprocessed batch -> (image scores (B,), anomaly maps (B, H, W)) as numpy."""
        from edgead.components.common import infer

        module = self._module(self.model_module) if self.model_module else None
        return getattr(module, "infer", infer)(model, batch)

    def export(self, saved: Any, out: str | Path, overwrite: bool = False, **options: Any) -> Path:
        return self._module(self.export_module).export(saved, out, overwrite, **options)

    # -- shared behaviour -----------------------------------------------------------------------
    def config_from_dict(self, d: dict) -> Any:
        return self.config_cls.from_dict(d)

    def config_from_options(self, options: dict) -> Any:
        """Command-line values -> the config dataclass (unknown names are not config fields)."""
        fields = {f.name for f in dataclasses.fields(self.config_cls)}
        values = {k: v for k, v in options.items() if k in fields}
        if "layers" in fields:
            values["layers"] = (
                tuple(options["layers"].split(",")) if options.get("layers") else None
            )
        if options.get("image_size"):
            values["image_size"] = parse_size(options["image_size"])
        else:
            values.pop("image_size", None)  # the detector's own default
        return self.config_cls(**self.check_options(values))

    def check_options(self, values: dict) -> dict:
        """Detector-specific checks and conversions of the config values."""
        return values

    def all_export_option_names(self) -> list[str]:
        from edgead.detectors.options import EXPORT_OPTIONS

        return option_names(EXPORT_OPTIONS + self.export_options())


def parse_size(value: str) -> tuple[int, int]:
    """``N`` or ``HxW`` -> (height, width)."""
    try:
        parts = [int(v) for v in str(value).lower().split("x")]
    except ValueError as exc:
        raise EdgeadError(f"{value!r}: expected N or HxW, e.g. 224 or 256x320") from exc
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 32:
        raise EdgeadError(f"{value!r}: expected N or HxW with sides >= 32")
    return parts[0], parts[1]


_builtins_loaded = False


def load_builtins() -> None:
    """Register the built-in detectors (their packages' ``__init__``: no torch)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for package in BUILTIN:
        importlib.import_module(f"edgead.detectors.{package}")


def get_detector(name: str) -> Detector:
    load_builtins()
    if name not in DETECTORS:
        raise EdgeadError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]


def detector_names() -> list[str]:
    load_builtins()
    return sorted(DETECTORS)
