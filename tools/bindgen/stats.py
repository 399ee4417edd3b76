"""Counts of what was generated against what the headers declare (``--stats``)."""

from __future__ import annotations

from pathlib import Path

from . import config
from .generate import modules
from .headerscan import scan_all


def report(root: Path = config.LLAMA_CPP) -> str:
    mods = modules(root)
    scans = scan_all(root)
    by_header_fn: dict[str, list[str]] = {}
    by_header_rec: dict[str, list[str]] = {}
    by_header_enum: dict[str, list[str]] = {}
    by_header_const: dict[str, list[str]] = {}
    for m in mods:
        for f in m.functions:
            by_header_fn.setdefault(f.loc.header, []).append(f.name)
        for r in m.records:
            if r.c_spelling and r.c_spelling.split()[0] in ("struct", "union"):
                by_header_rec.setdefault(r.loc.header, []).append(r.key)
        for e in m.enums:
            by_header_enum.setdefault(e.loc.header, []).extend(x.name for x in e.enumerators)
        for c in m.constants:
            by_header_const.setdefault(c.loc.header, []).append(c.name)
    columns = ("functions", "structs/unions", "enumerators", "#defines")
    rows = [f"{'header':28} " + " ".join(f"{c:>15}" for c in columns),
            f"{'':28} " + " ".join(f"{'gen / declared':>15}" for _ in columns)]
    for header, sc in scans.items():
        gen_fn = set(by_header_fn.get(header, []))
        gen_rec = set(by_header_rec.get(header, []))
        gen_enum = set(by_header_enum.get(header, []))
        gen_const = set(by_header_const.get(header, []))
        declared_rec = set(sc.structs) | set(sc.unions)
        declared_enum = {x for items in sc.enums.values() for x in items}
        rows.append(
            f"{header:28} "
            f"{len(gen_fn & set(sc.functions)):>6} / {len(set(sc.functions)):<6} "
            f"{len(gen_rec & declared_rec):>6} / {len(declared_rec):<6} "
            f"{len(gen_enum & declared_enum):>6} / {len(declared_enum):<6} "
            f"{len(gen_const & set(sc.defines)):>6} / {len(set(sc.defines)):<6}".rstrip()
        )
    extra = []
    for m in mods:
        if m.name == "ggml":
            extra.append(
                f"ggml (types they use + config.GGML_FUNCTIONS): {len(m.functions)} functions, "
                f"{len(m.records)} structs/unions ({sum(r.fields is None for r in m.records)} opaque), "
                f"{sum(len(e.enumerators) for e in m.enums)} enumerators in {len(m.enums)} enums, "
                f"{len(m.typedefs)} typedefs, {len(m.constants)} constants"
            )
    totals = (
        f"total generated: {sum(len(m.functions) for m in mods)} functions, "
        f"{sum(len(m.records) for m in mods)} structs/unions "
        f"(incl. {sum(1 for m in mods for r in m.records if r.nested_in)} unnamed nested), "
        f"{sum(len(e.enumerators) for m in mods for e in m.enums)} enumerators, "
        f"{sum(len(m.typedefs) for m in mods)} typedefs "
        f"({sum(1 for m in mods for t in m.typedefs if t.synthetic)} named by bindgen), "
        f"{sum(len(m.constants) for m in mods)} constants"
    )
    return "\n".join([*rows, *extra, totals])
