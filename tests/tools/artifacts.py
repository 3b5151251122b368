"""Checks what `sam build` produced: every function's bootstrap is an arm64 (aarch64) ELF binary, and its zipped size
(the deployment package) is reported against the 5 MB target. Exits 1 if a function is missing, not arm64, or over
the target: a size budget that only warns is soon spent."""
import io
import os
import sys
import zipfile

TARGET = 5_000_000  # bytes: the stricter reading of "5 MB" (Lambda counts MiB), as the table prints MB


def machine(path):
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        return "not ELF"
    return {183: "aarch64", 62: "x86_64"}.get(int.from_bytes(head[18:20], "little"), "other")


def main(build_dirs):
    bad, rows = 0, []
    for d in build_dirs:
        for fn in sorted(os.listdir(d)):
            boot = os.path.join(d, fn, "bootstrap")
            if not os.path.isdir(os.path.join(d, fn)):
                continue
            if not os.path.exists(boot):
                rows.append((fn, "missing", 0, 0)); bad += 1
                continue
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
                z.write(boot, "bootstrap")
            arch = machine(boot)
            bad += arch != "aarch64" or len(buf.getvalue()) > TARGET
            rows.append((fn, arch, os.path.getsize(boot), len(buf.getvalue())))
    print(f"{'function':32} {'arch':8} {'binary':>10} {'zipped':>10}")
    for fn, arch, size, zipped in rows:
        flag = "  over the 5 MB target" if zipped > TARGET else ""
        print(f"{fn:32} {arch:8} {size / 1e6:9.2f}M {zipped / 1e6:9.2f}M{flag}")
    if bad:
        print(f"{bad} function(s) missing, not arm64 or over the 5 MB target", file=sys.stderr)
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
