"""A small tmpfs seen only by the processes started in it: real full-disk and read-only faults.

Why a private mount namespace. The tests run as root in CI, and root ignores file modes and
quotas: ``chmod`` cannot make a database read-only for it and nothing stops it filling the
machine's disk. A tmpfs of a few MiB is a real filesystem with a real size: a write past it
fails with ``ENOSPC`` exactly as on a full disk, and ``mount -o remount,bind,ro`` makes its
mount read-only (``EROFS``) for everyone, root included. Mounted in a mount namespace of
its own (``unshare --mount``; as a normal user ``unshare --user --map-root-user --mount``,
root only inside that namespace), it leaves the machine's mounts alone and vanishes with
its holder process, so a crashed test leaks nothing.

The other candidate, ``RLIMIT_FSIZE`` on the server process with ``SIGXFSZ`` ignored, was
set aside: the kernel answers ``EFBIG``, which SQLite reports as a disk I/O error rather
than as a full database, the limit applies to every file the process writes, and it
cannot make anything read-only.

Two things to know when using it:

- Processes reach the tmpfs through ``nsenter`` into the holder's namespaces
  (:meth:`Tmpfs.enter`). Plain files can also be reached from outside through
  ``/proc/<holder>/root`` (:meth:`Tmpfs.outside`), but SQLite resolves that magic link to
  the path it names in the caller's namespace, so a database is only opened from inside.
- The kernel refuses to make a mount read-only while any file on it is open for writing
  (``EBUSY``); a running server holds its database open, so a read-only remount happens
  between two server processes.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _missing_tool() -> str | None:
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return tool
    return None


class Tmpfs:
    """A tmpfs of ``size`` mounted on ``mountpoint`` in a mount namespace of its own."""

    def __init__(self, mountpoint: Path, size: str = "8m") -> None:
        self.mountpoint = mountpoint
        self.size = size
        self.as_root = os.geteuid() == 0
        mountpoint.mkdir(parents=True, exist_ok=True)
        namespaces = ["--mount"] if self.as_root else ["--user", "--map-root-user", "--mount"]
        # The holder mounts the tmpfs and then waits on its stdin: when this process ends
        # for any reason, the pipe closes, the holder exits and the namespace goes with it.
        script = (
            f'mount -t tmpfs -o size={size},mode=0700 strongroom-test "$1" '
            "&& echo mounted && exec cat >/dev/null"
        )
        command = ["unshare", *namespaces, "--propagation", "private", "--"]
        self.holder = subprocess.Popen(
            [*command, "sh", "-c", script, "sh", str(mountpoint)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.holder.stdout is not None
        ready, _, _ = select.select([self.holder.stdout], [], [], 15)
        line = self.holder.stdout.readline() if ready else b""
        if line != b"mounted\n":
            self.holder.kill()
            _, stderr = self.holder.communicate()
            self.close()
            raise RuntimeError(
                "could not mount a tmpfs in a private mount namespace: "
                + stderr.decode(errors="replace").strip()
            )

    def enter(self) -> list[str]:
        """The command prefix that runs a program inside the tmpfs's namespace."""
        prefix = ["nsenter", f"--target={self.holder.pid}", "--mount", "--no-fork"]
        if not self.as_root:
            prefix[2:2] = ["--user", "--preserve-credentials"]
        return [*prefix, "--"]

    def outside(self, relative: str) -> Path:
        """A file on the tmpfs as a path that works from outside (not for SQLite)."""
        return Path(f"/proc/{self.holder.pid}/root") / self.mountpoint.relative_to("/") / relative

    def run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (with ``env`` added to PATH and HOME)."""
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
        result = subprocess.run(
            [*self.enter(), *args],
            env={**full_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{args} failed ({result.returncode}): {result.stderr}")
        return result

    def python(self, code: str, *args: str) -> str:
        """Run Python code inside the namespace (with this interpreter) and return stdout."""
        return self.run(sys.executable, "-c", code, *args).stdout

    def fill(self, name: str = "filler") -> int:
        """Write a file until the tmpfs is full; the number of bytes it took."""
        written = 0
        chunk = b"\0" * 65536
        with self.outside(name).open("wb", buffering=0) as file:
            while True:
                try:
                    written += file.write(chunk) or 0
                except OSError as exc:
                    if exc.errno != 28:  # ENOSPC
                        raise
                    break
            # The last partial chunk: fill to the very last byte.
            for size in (4096, 512, 1):
                try:
                    while True:
                        written += file.write(b"\0" * size) or 0
                except OSError:
                    pass
        return written

    def free(self, name: str = "filler") -> None:
        self.outside(name).unlink()

    def remount(self, *, read_only: bool) -> subprocess.CompletedProcess[str]:
        """Make the mount read-only or writable again. ``bind`` changes the mount's own
        flag, which a user namespace may do (it may not remount the tmpfs itself); writes
        through it then fail with ``EROFS`` just the same."""
        mode = "ro" if read_only else "rw"
        return self.run("mount", "-o", f"remount,bind,{mode}", str(self.mountpoint), check=False)

    def close(self) -> None:
        if self.holder.poll() is None:
            assert self.holder.stdin is not None
            self.holder.stdin.close()
            try:
                self.holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait()
        for stream in (self.holder.stdin, self.holder.stdout, self.holder.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def tmpfs_or_fail(mountpoint: Path, size: str = "8m") -> Tmpfs:
    """A :class:`Tmpfs`, or the reason it cannot be made: a failure under CI, else a skip."""
    problem = _missing_tool()
    tmpfs: Tmpfs | None = None
    if problem is not None:
        problem = f"{problem} is not installed"
    else:
        try:
            tmpfs = Tmpfs(mountpoint, size)
        except RuntimeError as exc:
            problem = str(exc)
    if tmpfs is None:
        message = f"no private tmpfs for the disk fault tests: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return tmpfs
