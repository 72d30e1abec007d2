#!/usr/bin/env python3
"""Fails when modules of a crate import each other in a cycle.

A cycle between modules usually means a type shared by both lives in one of
its consumers; it should move to a module of its own that both depend on.

For every crate root (lib.rs, main.rs, src/bin/*) the script follows `mod`
declarations to find the file modules, reads every `crate::`, `super::` and
`self::` path in them (in `use` trees and inline), resolves each to the file
module that defines the item (following `pub use` re-exports), and reports
every strongly connected group of more than one module. A module declaring a
child (`mod x;`) is ownership, not a dependency; a parent that uses its
child's items and a child that uses its parent's items is a cycle.

    hack/check-module-cycles.py [--graph] CRATE_DIR...

--graph prints each module's dependencies.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """Source without comments, string and char literals (kept line count)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append("\n" * text.count("\n", i, end) + '""')
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text.count("\n", i, j) + '""')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Module:
    def __init__(self, path, file, crate_dir):
        self.path = path  # tuple of names from the crate root
        self.file = file
        self.children = {}  # name -> Module (file modules)
        self.inline = set()  # inline `mod x { }` names, part of this file
        self.reexports = {}  # name -> tuple path (relative to crate root)
        self.items = set()  # names of items defined here
        self.glob_reexports = []  # tuple paths
        self.text = strip(file.read_text())
        self.crate_dir = crate_dir
        self.items = set(
            re.findall(
                r"\b(?:struct|enum|fn|type|const|static|trait|union|macro_rules!)\s+(" + IDENT + ")",
                self.text,
            )
        )
        # Inline modules (`mod tests { ... }`): their spans, so that `super`
        # inside one names this file's module.
        self.inline_spans = []
        for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", self.text):
            depth, i = 0, m.end() - 1
            while i < len(self.text):
                if self.text[i] == "{":
                    depth += 1
                elif self.text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            self.inline_spans.append((m.end(), i))

    def inline_depth(self, position):
        return sum(1 for start, end in self.inline_spans if start <= position < end)

    def name(self):
        return "::".join(self.path) or "crate"


def child_dir(module):
    file = module.file
    if file.name in ("mod.rs", "lib.rs", "main.rs") or (
        file.parent.name == "bin" and module.path == ()
    ):
        if file.parent.name == "bin" and file.name != "main.rs":
            return file.parent / file.stem
        return file.parent
    return file.parent / file.stem


def load(root_file, crate_dir):
    root = Module((), root_file, crate_dir)
    stack = [root]
    while stack:
        module = stack.pop()
        for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*([;{])", module.text):
            name, kind = m.group(1), m.group(2)
            if kind == "{":
                module.inline.add(name)
                continue
            base = child_dir(module)
            for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
                if candidate.exists():
                    child = Module(module.path + (name,), candidate, crate_dir)
                    module.children[name] = child
                    stack.append(child)
                    break
    return root


def use_trees(text):
    """Yields (is_pub, expanded path) for every `use` declaration."""
    for m in re.finditer(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
        is_pub = bool(m.group(1))
        for path in expand(m.group(2).replace("\n", " ").strip()):
            yield is_pub, path, m.start()


def expand(tree):
    tree = tree.strip()
    depth = 0
    for i, c in enumerate(tree):
        if c == "{":
            if depth == 0:
                prefix = tree[:i].rstrip(":").strip()
                inner = tree[i + 1 : tree.rindex("}")]
                results = []
                for part in split_top(inner):
                    for sub in expand(part):
                        if sub == ["self"]:
                            results.append(segments(prefix))
                        else:
                            results.append(segments(prefix) + sub)
                return results
            depth += 1
        elif c == "}":
            depth -= 1
    path = re.sub(r"\s+as\s+" + IDENT + "$", "", tree)
    return [segments(path)] if path else []


def segments(path):
    return [s.strip() for s in path.split("::") if s.strip()]


def split_top(inner):
    parts, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return [p for p in parts if p.strip()]


def absolute(module, path, position=0):
    """The path from the crate root, or None when it leaves the crate."""
    if not path:
        return None
    head = path[0]
    if head == "crate":
        return tuple(path[1:])
    if head in ("super", "self"):
        base = list(module.path)
        inline = module.inline_depth(position)
        rest = list(path)
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                if inline:
                    inline -= 1
                elif base:
                    base.pop()
            rest.pop(0)
        return tuple(base + rest)
    if head in module.children:
        return module.path + tuple(path)
    return None


def resolve(modules, path, seen=None):
    """The file module that defines the item `path` names."""
    seen = seen or set()
    current = modules[()]
    i = 0
    while i < len(path):
        segment = path[i]
        if segment in current.children:
            current = current.children[segment]
            i += 1
            continue
        if segment in current.reexports and (current.path, segment) not in seen:
            seen.add((current.path, segment))
            return resolve(modules, current.reexports[segment] + tuple(path[i + 1 :]), seen)
        for glob in current.glob_reexports:
            target = resolve(modules, glob, seen)
            if segment in target.children or segment in target.reexports or segment in target.items:
                return resolve(modules, glob + tuple(path[i:]), seen)
        break
    return current


def analyse(root):
    modules = {}
    stack = [root]
    while stack:
        module = stack.pop()
        modules[module.path] = module
        stack.extend(module.children.values())
    for module in modules.values():
        for is_pub, path, position in use_trees(module.text):
            if not is_pub:
                continue
            target = absolute(module, path, position)
            if target is None:
                continue
            if target and target[-1] == "*":
                module.glob_reexports.append(target[:-1])
            elif target:
                module.reexports[target[-1]] = target
    edges = {path: {} for path in modules}
    for module in modules.values():
        paths = [(p, pos) for _, p, pos in use_trees(module.text)]
        for m in re.finditer(r"\b((?:crate|super|self)(?:::" + IDENT + r")+)", module.text):
            paths.append((m.group(1).split("::"), m.start()))
        # Paths that start at a child module (`deploy::manifest()`).
        for m in re.finditer(r"(?<![:\w])(" + IDENT + r")((?:::" + IDENT + r")+)", module.text):
            if m.group(1) in module.children:
                paths.append(([m.group(1)] + m.group(2).split("::")[1:], m.start()))
        for path, position in paths:
            if path and path[-1] == "*":
                path = path[:-1]
            target = absolute(module, path, position)
            if target is None:
                continue
            defined = resolve(modules, target)
            if defined.path != module.path:
                line = module.text.count("\n", 0, position) + 1
                edges[module.path].setdefault(defined.path, f"{module.file}:{line}")
    return modules, edges


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def crate_roots(crate_dir):
    src = crate_dir / "src"
    roots = [src / name for name in ("lib.rs", "main.rs") if (src / name).exists()]
    bin_dir = src / "bin"
    if bin_dir.is_dir():
        for entry in sorted(bin_dir.iterdir()):
            if entry.suffix == ".rs":
                roots.append(entry)
            elif (entry / "main.rs").exists():
                roots.append(entry / "main.rs")
    return roots


def main(argv):
    graph = "--graph" in argv
    dirs = [Path(a) for a in argv if not a.startswith("--")]
    failed = False
    for crate_dir in dirs:
        for root_file in crate_roots(crate_dir):
            modules, edges = analyse(load(root_file, crate_dir))
            label = root_file.relative_to(crate_dir.parent) if crate_dir.parent != Path(".") else root_file
            if graph:
                print(f"{root_file}:")
                for path in sorted(edges):
                    name = "::".join(path) or "crate"
                    targets = ", ".join("::".join(t) or "crate" for t in sorted(edges[path]))
                    print(f"  {name} -> {targets or '-'}")
            for group in cycles(edges):
                failed = True
                names = ", ".join("::".join(p) or "crate" for p in group)
                print(f"{root_file}: import cycle between {names}:")
                members = set(group)
                for source in group:
                    for target, where in sorted(edges[source].items()):
                        if target in members:
                            print(f"  {'::'.join(source) or 'crate'} -> {'::'.join(target) or 'crate'} ({where})")
            del label
    if failed:
        print("Move the shared items into a module of their own that both sides use.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
