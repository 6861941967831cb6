"""Make stand-in shared libraries for the codec and network libraries that Debian's
FFmpeg links but fgclip never calls, so a GPU machine without FFmpeg can load the
binary with only the FFmpeg libraries themselves carried beside it (see bundle.sh).

Each stub has the real library's SONAME and symbol versions and defines exactly the
symbols the kept libraries import from it: functions return 0 (NULL), which FFmpeg's
static codec set-up and format probing read as "absent" (FGCLIP_STUB_TRACE=1 logs each
call), a few probes answer "not this format", and data symbols are zero-filled 64-byte
objects. Debian builds FFmpeg with BIND_NOW, so every import must
resolve at load time even though none of these libraries is used for H.264/MPEG-4 I/O.

    python3 tools/gpu/stub_libs.py OUTDIR KEPT_LIB... -- STUBBED_LIB...
"""
import collections
import os
import re
import subprocess
import sys

# objdump -T: ADDRESS FLAGS SECTION SIZE [VERSION] NAME
LINE = re.compile(r"^[0-9a-f]+\s+(?P<flags>.{7})\s+(?P<sec>\S+)\s+[0-9a-f]+\s+(?P<ver>\(?[^\s)]+\)?)?\s*(?P<name>\S+)$")

# Called by libavformat's format probing on every input: answer "not this format".
PROBES = {
    "gme_identify_header": '""',
    "openmpt_probe_file_header": "0",
    "openmpt_probe_file_header_without_filesize": "0",
}

TRACE = """#include <stdio.h>
#include <stdlib.h>
static void trace(const char *what) {
    if (getenv("FGCLIP_STUB_TRACE")) fprintf(stderr, "stub called: %s\\n", what);
}"""


def dynsyms(path):
    out = subprocess.run(["objdump", "-T", path], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = LINE.match(line.strip())
        if m:
            yield m["flags"], m["sec"], (m["ver"] or "").strip("()"), m["name"]


def soname(path):
    out = subprocess.run(["objdump", "-p", path], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.split()[:1] == ["SONAME"]:
            return line.split()[1]
    return os.path.basename(path)


def main():
    args = sys.argv[1:]
    outdir, rest = args[0], args[1:]
    split = rest.index("--")
    kept, stubbed = rest[:split], rest[split + 1 :]
    os.makedirs(outdir, exist_ok=True)

    # What each to-be-stubbed library defines, and whether each symbol is data.
    defines = {}
    for path in stubbed:
        table = {}
        for flags, sec, ver, name in dynsyms(path):
            if sec != "*UND*":
                table[name] = "O" in flags
        defines[soname(path)] = table

    # What the kept libraries import (strong references only) from those.
    # Weak references still need their version node to exist in the stub.
    wanted = {so: {} for so in defines}  # soname -> name -> (version, is_data)
    versions = {so: set() for so in defines}
    for path in kept:
        for flags, sec, ver, name in dynsyms(path):
            if sec != "*UND*":
                continue
            for so, table in defines.items():
                if name in table:
                    v = "" if ver in ("Base", "") else ver
                    if v:
                        versions[so].add(v)
                    if "w" not in flags:
                        wanted[so][name] = (v, table[name])
                    break

    for so, syms in sorted(wanted.items()):
        stem = os.path.join(outdir, so)
        c = [TRACE]
        for name, (_, data) in sorted(syms.items()):
            if data:
                c.append(f"char {name}[64];")
            elif name in PROBES:
                c.append(f"const void *{name}(void) {{ return {PROBES[name]}; }}")
            else:
                c.append(f'long {name}(void) {{ trace("{so}: {name}"); return 0; }}')
        with open(stem + ".c", "w") as f:
            f.write("\n".join(c) + "\n")
        cmd = ["cc", "-shared", "-fPIC", "-O1", "-o", stem, stem + ".c", f"-Wl,-soname,{so}"]
        node_names = sorted(versions[so])
        if node_names:
            # Unversioned references bind to any default definition, so they go in the first node.
            nodes = collections.defaultdict(list)
            for name, (v, _) in syms.items():
                nodes[v or node_names[0]].append(name)
            with open(stem + ".map", "w") as f:
                for v in node_names:
                    f.write(f"{v} {{ global: {'; '.join(sorted(nodes[v]))}; }};\n")
            cmd.append(f"-Wl,--version-script={stem}.map")
        subprocess.run(cmd, check=True)
        os.remove(stem + ".c")
        if node_names:
            os.remove(stem + ".map")
        print(f"stub {so}: {len(syms)} symbols, versions {node_names or '-'}")


if __name__ == "__main__":
    main()
