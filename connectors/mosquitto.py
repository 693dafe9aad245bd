"""A Mosquitto broker process of one's own, configured from ``deploy/mosquitto.conf`` (tests, bench, trials).

The tests and the bench must not touch the machine's shared broker (127.0.0.1:1883) for anything that
restarts or reconfigures a broker, so they start their own: same configuration file as a deployment, with the
listener moved to a free loopback port, persistence and log in a private directory. ``restart()`` stops the
broker with SIGTERM (a clean shutdown that writes the persistence file, like ``systemctl restart``) and
starts it again on the same port with the same database.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["MosquittoProcess", "deploy_config_path", "mosquitto_binary"]


def deploy_config_path() -> Path:
    """``deploy/mosquitto.conf`` of the source tree this package runs from."""
    p = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto.conf"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: MosquittoProcess needs the source tree's deploy/mosquitto.conf")
    return p


def mosquitto_binary() -> str:
    """Path of the ``mosquitto`` executable; ``FileNotFoundError`` naming where it was looked for."""
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError("mosquitto not found on PATH nor in /usr/sbin (Debian: apt-get install mosquitto)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MosquittoProcess:
    """Run ``mosquitto -c <deploy config, adapted>`` on 127.0.0.1:``port`` with state in ``workdir``.

    ``overrides`` replace or add settings (``{"max_queued_messages": "1000"}`` to reproduce the default).
    """

    def __init__(self, workdir: str | os.PathLike, port: int | None = None, overrides: dict[str, str] | None = None,
                 config: str | os.PathLike | None = None, tls: dict[str, str] | None = None,
                 passwords: dict[str, str] | None = None):
        """``tls``: {"certfile", "keyfile", "cafile" (optional), "require_certificate" (optional)} for a TLS
        listener; ``passwords``: user -> password (anonymous clients are then refused)."""
        self.tls = dict(tls or {})
        self.passwords = dict(passwords or {})
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.config_source = Path(config) if config else deploy_config_path()
        self.overrides = dict(overrides or {})
        self.proc: subprocess.Popen | None = None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"

    def _config(self) -> str:
        out = []
        replace = {"persistence_location": f"{self.workdir}/", "log_dest": f"file {self.log_path}",
                   **self.overrides}
        if self.passwords:
            replace["allow_anonymous"] = "false"
            replace["password_file"] = str(self.workdir / "passwd")
        if os.geteuid() == 0 and "user" not in replace:
            # Started as root, Mosquitto drops to the user "mosquitto" before writing its database and log;
            # that user cannot write a private temporary directory, so persistence would silently fail at
            # shutdown ("Error saving in-memory database ... Permission denied") and a restart would lose
            # the queued messages. A private test broker on loopback may stay root.
            replace["user"] = "root"
        done = set()
        for line in self.config_source.read_text().splitlines():
            key = line.split("#", 1)[0].split()
            if not key:
                out.append(line)
                continue
            k = key[0]
            if k == "listener":
                if "listener" not in done:
                    out.extend(self._listener())
                    done.add("listener")
                continue
            if k in ("certfile", "keyfile", "cafile", "password_file", "acl_file", "require_certificate",
                     "tls_version"):
                continue
            if k in replace:
                if k not in done:
                    out.append(f"{k} {replace[k]}")
                    done.add(k)
                continue
            out.append(line)
        for k, v in replace.items():
            if k not in done:
                out.append(f"{k} {v}")
        if "listener" not in done:
            out.extend(self._listener())
        return "\n".join(out) + "\n"

    def _listener(self) -> list[str]:
        lines = [f"listener {self.port} 127.0.0.1"]
        for k in ("certfile", "keyfile", "cafile", "require_certificate"):
            if k in self.tls:
                lines.append(f"{k} {self.tls[k]}")
        return lines

    def start(self, timeout: float = 10.0) -> "MosquittoProcess":
        self.conf_path.write_text(self._config())
        if self.passwords:
            pw = self.workdir / "passwd"
            pw.write_text("")
            tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for user, password in self.passwords.items():
                subprocess.run([tool, "-b", str(pw), user, password], check=True, capture_output=True)
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf_path)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err.strip()} {log.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (clean shutdown, persistence written), SIGKILL if it does not exit in ``timeout``.

        Raises ``RuntimeError`` if Mosquitto reports that it could not save its database.
        """
        if self.proc is None:
            return
        before = len(self.log_lines())
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        failed = [ln for ln in self.log_lines()[before:] if "Error saving" in ln or "Permission denied" in ln]
        if failed:
            raise RuntimeError(f"mosquitto on port {self.port} could not save its database: {' '.join(failed)}")

    def kill(self) -> None:
        """SIGKILL: a crash; what arrived since the last autosave is lost by the broker."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_lines(self, pattern: str = "") -> list[str]:
        if not self.log_path.exists():
            return []
        rx = re.compile(pattern) if pattern else None
        return [ln for ln in self.log_path.read_text(errors="replace").splitlines() if rx is None or rx.search(ln)]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
