"""Shared machinery of every derivation: sympy -> numba source, common-subexpression
elimination, and writing or checking a generated module.

A derivation module (one per model, e.g. :mod:`derivations.huang2024`) exposes ``TARGET`` (the
path of the generated ``.py`` file inside ``dynamics/``) and ``render() -> str`` (its full
text).  :mod:`derivations.build` writes every target through the project's atomic writer or
checks that the committed files equal what the derivations produce now.
"""
from __future__ import annotations

import os

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from dynamics.core.atomic import atomic_write_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NumbaPrinter(PythonCodePrinter):
    """Python printer whose small integer powers are products (``u*u*u``): exact in float64,
    cheaper than ``pow`` in numba, and the same bits on every platform."""

    def _print_Pow(self, expr, rational=False):
        base, e = expr.as_base_exp()
        if e.is_Integer and 2 <= int(e) <= 4:
            b = self._print(base)
            return "*".join([f"({b})" if not base.is_Symbol else b] * int(e))
        return super()._print_Pow(expr, rational=rational)


def jit_function(name: str, args, exprs, doc_lines) -> str:
    """Source of one ``@jit`` function returning the tuple ``exprs`` after CSE.

    ``args``: argument names (every free symbol of ``exprs`` must be among them);
    ``doc_lines``: the docstring, one string per line.
    """
    printer = NumbaPrinter({"standard": "python3"})
    exprs = [sp.sympify(e) for e in exprs]
    names = {str(x) for e in exprs for x in e.free_symbols}
    missing = names - set(args)
    assert not missing, f"{name} needs symbols that are not arguments: {sorted(missing)}"
    reps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("x"), optimizations="basic")
    lines = ["", "", "@jit", f"def {name}({', '.join(args)}):", f'    """{doc_lines[0]}']
    lines += [f"    {line}" if line else "" for line in doc_lines[1:]]
    lines.append('    """')
    for sym, e in reps:
        lines.append(f"    {sym} = {printer.doprint(e)}")
    out = [printer.doprint(e) if e != 0 else "0.0" for e in reduced]
    lines.append(f"    return {', '.join(out)}")
    return "\n".join(lines)


def write(target: str, text: str) -> None:
    """Write a generated module atomically (mode 0644, like every file the project writes)."""
    atomic_write_bytes(target, text.encode())


def is_current(target: str, text: str) -> bool:
    """True when the committed file at ``target`` equals ``text``."""
    try:
        with open(target) as fh:
            return fh.read() == text
    except FileNotFoundError:
        return False
