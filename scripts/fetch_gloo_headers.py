"""Puts Gloo's C++ headers into torch's include directory (argument 1).

They come from Debian's libgloo-dev package, pinned by SHA-256; a .deb is an `ar` archive
whose data.tar.* holds usr/include/gloo. Only headers are used: the compiled Gloo inside
libtorch_cpu does the work.
"""
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

URL = "https://deb.debian.org/debian/pool/main/g/gloo/libgloo-dev_0.0~git20220518.5b14351-3_amd64.deb"
SHA256 = "80529c9fd8af452faf489e686b94bf87075965c40673803810c4f41634b1e299"


def ar_members(blob: bytes):
    if not blob.startswith(b"!<arch>\n"):
        raise SystemExit(f"{URL}: not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        yield name, blob[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)


def main() -> None:
    target = Path(sys.argv[1])
    with urllib.request.urlopen(URL, timeout=60) as response:
        blob = response.read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{URL}: SHA-256 {digest}, expected {SHA256}")
    data = next((body for name, body in ar_members(blob) if name.startswith("data.tar")), None)
    if data is None:
        raise SystemExit(f"{URL}: no data.tar member")
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or "include" not in parts:
                continue
            relative = Path(*parts[parts.index("include") + 1 :])
            if relative.parts[0] == "gloo":
                out = target / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
                count += 1
    if count == 0:
        raise SystemExit(f"{URL}: no headers under usr/include/gloo")
    print(f"{count} Gloo headers in {target / 'gloo'}")


if __name__ == "__main__":
    main()
