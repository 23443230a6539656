"""Hostile archives through the shipped bundle reader: wall time and peak Python memory to refuse each.

    python benchmarks/hostile_archives.py

The archives are built here, as an attacker would: a pax header of 64k digits (CVE-2024-6232's
trigger), a GNU long-name member claiming 200 MiB of zeros (~200 KiB once gzipped), 200 pax headers
of 60 KiB each (gzipped to a few KiB), and an honest 500-file archive for comparison.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.test")


def _header(name: bytes, typeflag: bytes, size: int) -> bytes:
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\0"
    block[124:136] = f"{size:011o}\0".encode()
    block[156:157] = typeflag
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return bytes(block)


def archives() -> dict[str, bytes]:
    digits = b"1" * 65_000 + b"\n"
    pax_digits = _header(b"././@PaxHeader", b"x", len(digits)) + digits + bytes(-len(digits) % 512) + bytes(1024)
    size = 200 * 1024 * 1024
    compressor = zlib.compressobj(9, wbits=31)
    chunks = [compressor.compress(_header(b"././@LongLink", b"L", size))]
    zeros = bytes(1024 * 1024)
    chunks += [compressor.compress(zeros) for _ in range(size // len(zeros))]
    chunks.append(compressor.flush())
    record = b"path=" + b"a" * (60 * 1024) + b"\n"
    payload = f"{len(record) + 6} ".encode() + record
    one = _header(b"././@PaxHeader", b"x", len(payload)) + payload + bytes(-len(payload) % 512)
    honest = io.BytesIO()
    with tarfile.open(fileobj=honest, mode="w:gz", format=tarfile.PAX_FORMAT) as bundle:
        for n in range(500):
            content = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{n}\n".encode() * 20
            info = tarfile.TarInfo(f"manifests/{n:03d}-{'d' * 120}.yaml")
            info.size = len(content)
            bundle.addfile(info, io.BytesIO(content))
    return {
        "pax header of 64k digits (.tar)": pax_digits,
        "long-name member claiming 200 MiB (.tar.gz)": b"".join(chunks),
        "200 pax headers of 60 KiB (.tar.gz)": gzip.compress(one * 200 + bytes(1024), compresslevel=9),
        "honest 500 files, pax long names (.tar.gz)": honest.getvalue(),
    }


def main() -> None:
    import django

    django.setup()
    from policies.bundles import expand_bundle

    print(f"{'archive':46} {'upload':>10} {'time':>9} {'peak':>10}  outcome")
    for label, data in archives().items():
        upload = [("bundle.tar.gz" if data[:2] == b"\x1f\x8b" else "bundle.tar", data)]
        started = time.perf_counter()  # time without tracemalloc, which slows every allocation
        files, findings = expand_bundle(upload)
        elapsed = time.perf_counter() - started
        tracemalloc.start()
        expand_bundle(upload)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        outcome = f"refused {findings[0].code}" if findings else f"read {len(files)} files"
        print(f"{label:46} {len(data) / 1024:8.0f} KiB {elapsed * 1000:7.1f} ms {peak / 2**20:7.2f} MiB  {outcome}")


if __name__ == "__main__":
    main()
