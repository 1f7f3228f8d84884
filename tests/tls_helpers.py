"""A private PKI made with the openssl command, for TLS tests: two CAs, a broker
certificate for 127.0.0.1 signed by the first, client certificates signed by each."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class PKI:
    dir: Path

    def __getattr__(self, name: str) -> Path:
        """`pki.ca_crt` is the file `ca.crt`, and so on."""
        path = self.dir / name.replace("_", ".", 1)
        if not path.is_file():
            raise AttributeError(name)
        return path

    def mosquitto_listener(self, port: int, require_certificate: bool = False) -> str:
        """mosquitto.conf lines for a TLS listener on 127.0.0.1 with the broker certificate."""
        lines = [
            f"listener {port} 127.0.0.1",
            f"cafile {self.dir / 'ca.crt'}",
            f"certfile {self.dir / 'server.crt'}",
            f"keyfile {self.dir / 'server.key'}",
        ]
        if require_certificate:
            lines.append("require_certificate true")
        return "\n".join(lines)


def make_pki(directory: Path) -> PKI:
    directory.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other"):
        _openssl("req", "-x509", *EC, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-days", "2", "-subj", f"/CN=sensorcast test {ca}", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    signed = (("server", "ca", True), ("client", "ca", False), ("rogue", "other", False))
    for name, ca, ext in signed:
        _openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                 *(["-extfile", "san.ext"] if ext else []), cwd=directory)  # fmt: skip
    return PKI(directory)
