"""MkDocs hook: the manifest reference page is generated from the manifest's dataclasses.

A page holding the line ``<!-- manifest-schema -->`` gets, in its place, one table per
dataclass of ``edgead.bundle.manifest`` (field, type, default) under the class's docstring, so a
field added to the code appears in the docs without editing them.
"""

from __future__ import annotations

import dataclasses
import inspect

MARKER = "<!-- manifest-schema -->"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{f.default!r}`"
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f"`{f.default_factory()!r}`"  # type: ignore[misc]
    return "required"


def manifest_schema() -> str:
    from edgead.bundle import manifest

    classes = [manifest.Manifest] + [
        c
        for _, c in inspect.getmembers(manifest, inspect.isclass)
        if dataclasses.is_dataclass(c)
        and c.__module__ == manifest.__name__
        and c is not manifest.Manifest
    ]
    parts = [
        f"Schema version **{manifest.SCHEMA_VERSION}** (`manifest.json`, field `schema_version`).\n"
    ]
    for cls in classes:
        doc = inspect.getdoc(cls) or ""
        if cls is manifest.Manifest:
            doc = "The top level of `manifest.json`."
        rows = [
            f"| `{f.name}` | `{str(f.type).replace('|', '&#124;')}` | {_default(f)} |"
            for f in dataclasses.fields(cls)
        ]
        parts.append(
            f"## {cls.__name__}\n\n{doc}\n\n| field | type | default |\n|---|---|---|\n"
            + "\n".join(rows)
            + "\n"
        )
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, manifest_schema())
    return markdown
