#!/usr/bin/env python3
"""Which source files of a Rust crate depend on each other in a loop.

Reads every `crate::…` and `super::…` path in src/ (use lines and inline paths, comments and strings
skipped), resolves each to the file that defines it, and prints the groups of files that reach each
other (strongly connected components), with the names that tie them. A file's own child modules
(`mod x;` under it) count as part of it only through the paths it actually uses.

Usage: module_cycles.py [--depth N | --files-in-folders] [SRC_DIR]   (default: src, files)
       exit 0 = no loop, 1 = loops
  --depth 1 folds every file into its top-level module (src/tasks/*.rs = tasks), the layers' view;
  --depth 2 one level further (upstream::grok_web), and so on.
  --files-in-folders  file level, but a loop of a folder's mod.rs with its own children (x/mod.rs,
      x/a.rs, x/b/mod.rs) is allowed; any other loop fails (scripts/layers.sh, in CI).

Copied from the team's tools (../shared/tools/module_cycles.py) with three fixes: `super::` in a file
that is not a mod.rs (x/a.rs) names its own folder's module (x), not the one above it; inside an inline
`mod tests { … }` it names the file's own module; and comments and string literals are removed in one
pass, so a string such as `"*/*"` is not read as the start of a comment.
"""
import os, re, signal, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
from collections import defaultdict

args = sys.argv[1:]
DEPTH = None
FOLDERS = False
if args[:1] == ["--depth"]:
    DEPTH, args = int(args[1]), args[2:]
elif args[:1] == ["--files-in-folders"]:
    FOLDERS, args = True, args[1:]
SRC = args[0] if args else "src"
files = {}
for root, _, names in os.walk(SRC):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(root, n)
            files[p] = open(p, encoding="utf-8").read()

def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel

mods = {tuple(module_of(p)): p for p in files}

def resolve(parts):
    """The file of the longest module prefix of `parts` (crate-relative segments)."""
    for k in range(len(parts), -1, -1):
        if tuple(parts[:k]) in mods:
            return mods[tuple(parts[:k])], parts[k:k + 1]
    return None, []

def strip(text):
    """Comments out, every string and char literal emptied, in one pass (so `"*/*"` or `"https://"` in a
    string is not taken for a comment, nor a `'"'` for a string)."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        prev = text[i - 1] if i else " "
        m = re.match(r'b?r(#*)"', text[i:i + 40]) if not (prev.isalnum() or prev == "_") else None
        if m:
            end = text.find('"' + m.group(1), i + m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
            continue
        if text[i] == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
            continue
        if text[i] == "'":
            m = re.match(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:i + 16])
            if m:
                i += m.end()
                out.append("' '")
                continue
        out.append(text[i])
        i += 1
    return "".join(out)

def expand(use):
    """`a::{b, c::d}` -> [a::b, a::c::d] (one level of nesting is enough for resolving files)."""
    m = re.match(r"(.*?)::\{(.*)\}$", use.strip(), re.S)
    if not m:
        return [use.strip()]
    head, body = m.groups()
    out, depth, cur = [], 0, ""
    for ch in body + ",":
        if ch == "," and depth == 0:
            if cur.strip():
                out += [head + "::" + x for x in expand(cur.strip())]
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    return out

edges = defaultdict(lambda: defaultdict(set))
for path, text in files.items():
    here = module_of(path)
    is_mod_file = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
    code = strip(text)
    # Inline modules (`mod tests { … }`): a `super::` inside one names the file's own module.
    spans = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code):
        depth, k = 0, m.end() - 1
        for k in range(m.end() - 1, len(code)):
            depth += code[k] == "{"
            depth -= code[k] == "}"
            if depth == 0:
                break
        spans.append((m.start(), k, m.group(1)))
    def inline_at(pos):
        return [name for a, b, name in sorted(spans) if a <= pos <= b]
    paths = []  # (path, position)
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        paths += [(e, m.start()) for e in expand(m.group(1))]
    paths += [(m.group(1), m.start()) for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", code)]
    # Paths through a name brought in by `use crate::a::b` (then `b::c::d(…)`) or through a child
    # module this file declares (`mod x;` then `x::y`).
    aliases = {}
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        for e in expand(m.group(1)):
            segs = [x.strip() for x in e.split("::")]
            if segs and segs[0] in ("crate", "super") and len(segs) > 1 and segs[-1] not in ("*", "self"):
                name = segs[-1].split(" as ")[-1].strip()
                aliases[name] = ("::".join(segs[:-1] + [segs[-1].split(" as ")[0].strip()]), m.start())
    for child in re.findall(r"\bmod\s+(\w+)\s*;", code):
        aliases.setdefault(child, ("crate::" + "::".join(here + [child]), 0))
    for name, (full, at) in aliases.items():
        for rest in re.findall(r"(?<![\w:])" + re.escape(name) + r"((?:::\w+)+)", code):
            paths.append((full + rest, at))
    for p, at in paths:
        segs = [s.strip() for s in p.split("::") if s.strip()]
        segs = [s.split(" as ")[0].strip() for s in segs]
        if not segs or segs[0] not in ("crate", "super"):
            continue
        if segs[0] == "crate":
            parts = segs[1:]
        else:
            base = here + inline_at(at)
            while segs and segs[0] == "super":
                segs = segs[1:]
                base = base[:-1] if base else base
            parts = base + segs
            # `super::` from a mod.rs child goes to its parent module
        target, name = resolve([s for s in parts if s not in ("self", "*")])
        if target and target != path:
            edges[path][target].update(name or ["(module)"])

if DEPTH:
    def fold(p):
        m = module_of(p)
        return "::".join(m[:DEPTH]) or "crate"
    folded = defaultdict(lambda: defaultdict(set))
    for a, targets in list(edges.items()):
        for b, names in targets.items():
            fa, fb = fold(a), fold(b)
            if fa != fb:
                folded[fa][fb].update(f"{os.path.relpath(a, SRC)}:{n}" for n in names)
    edges = folded
    files = {fold(p): None for p in files}

# Tarjan's strongly connected components.
index, low, stack, on, comps, i = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        comps.append(comp)
for v in list(files):
    if v not in index:
        visit(v)

def folder_loop(comp):
    """All of `comp` is one folder's mod.rs and that folder's own child modules."""
    for p in comp:
        if os.path.basename(p) == "mod.rs":
            parent = module_of(p)
            if all(module_of(q) == parent or module_of(q)[:-1] == parent for q in comp):
                return True
    return False

loops = [sorted(c) for c in comps if len(c) > 1 and not (FOLDERS and folder_loop(c))]
n_edges = sum(len(t) for t in edges.values())
unit = f"modules at depth {DEPTH}" if DEPTH else "files"
print(f"{len(files)} {unit}, {n_edges} dependencies between them, {len(loops)} loop(s)")
for k, comp in enumerate(sorted(loops, key=len, reverse=True), 1):
    members = set(comp)
    print(f"\nloop {k}: {len(comp)} {unit}")
    for a in comp:
        for b, names in sorted(edges[a].items()):
            if b in members:
                print(f"  {a} -> {b}: {', '.join(sorted(names)[:6])}{' …' if len(names) > 6 else ''}")
sys.exit(1 if loops else 0)
