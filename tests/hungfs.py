"""A real file system whose reads can be made to hang, as a network file system's do when
its server goes away: a FUSE loopback of a folder (fusepy over Debian's libfuse2), run
in a process of its own.

    with HungFiles(backing, mountpoint) as files:
        ...                 # a normal folder
        files.hang(10)      # for 10 s, opening a file for reading, and reading, wait
        files.release()     # and they go on

Only reads hang: a job can still write its files and its exit record (a scheduler that
reads them is what is tested). ``python -m tests.hungfs BACKING MOUNTPOINT FLAG`` runs
the file system in the foreground; reads hang while the file FLAG exists (a signal would
wait for ever: the FUSE loop holds the process's main thread).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any


class HungFiles:
    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing, self.mountpoint = backing, mountpoint
        self.flag = backing.with_name(backing.name + ".hang")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HungFiles:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.hungfs",
                str(self.backing),
                str(self.mountpoint),
                str(self.flag),
            ],
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the FUSE file system did not mount (is libfuse2 there?)")
            time.sleep(0.05)
        return self

    def hang(self, at_most: float) -> None:
        """Reads hang from now on, for ``at_most`` seconds (a timer, not the caller, ends
        it: a caller whose own thread hangs in a read could never release them)."""
        self.flag.touch()
        timer = threading.Timer(at_most, self.release)
        timer.daemon = True
        timer.start()

    def release(self) -> None:
        self.flag.unlink(missing_ok=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:  # fmt: skip
        if self.process is None:
            return
        self.release()
        subprocess.run(["fusermount", "-u", "-z", str(self.mountpoint)], capture_output=True)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(backing: str, mountpoint: str, flag: str) -> None:
    from fuse import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]

    def hung() -> None:
        while os.path.exists(flag):
            time.sleep(0.01)

    class Loopback(Operations):  # type: ignore[misc]
        def __init__(self, root: str) -> None:
            self.root = root

        def _full(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        def __call__(self, operation: str, path: str, *args: Any) -> Any:
            try:
                return super().__call__(operation, self._full(path), *args)
            except OSError as exc:
                raise FuseOSError(exc.errno or errno.EIO) from None

        def access(self, path: str, mode: int) -> None:
            if not os.access(path, mode):
                raise FuseOSError(errno.EACCES)

        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            info = os.lstat(path)
            return {key: getattr(info, key) for key in ("st_atime", "st_ctime", "st_gid",
                    "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")}  # fmt: skip

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", *os.listdir(path)]

        def readlink(self, path: str) -> str:
            return os.readlink(path)

        def open(self, path: str, flags: int) -> int:
            if flags & os.O_ACCMODE == os.O_RDONLY:
                hung()  # a read: waits while the file system hangs
            return os.open(path, flags)

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            hung()
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return os.pwrite(fh, data, offset)

        def truncate(self, path: str, length: int, fh: Any = None) -> None:
            os.truncate(path, length)

        def flush(self, path: str, fh: int) -> None:
            return None

        def fsync(self, path: str, datasync: int, fh: int) -> None:
            os.fsync(fh)

        def release(self, path: str, fh: int) -> None:
            os.close(fh)

        def mkdir(self, path: str, mode: int) -> None:
            os.mkdir(path, mode)

        def rmdir(self, path: str) -> None:
            os.rmdir(path)

        def unlink(self, path: str) -> None:
            os.unlink(path)

        def rename(self, old: str, new: str) -> None:
            os.rename(old, self._full(new))

        def symlink(self, target: str, source: str) -> None:
            os.symlink(source, target)

        def chmod(self, path: str, mode: int) -> None:
            os.chmod(path, mode)

        def chown(self, path: str, uid: int, gid: int) -> None:
            os.chown(path, uid, gid)

        def utimens(self, path: str, times: Any = None) -> None:
            os.utime(path, times)

        def mknod(self, path: str, mode: int, dev: int) -> None:
            os.mknod(path, mode, dev)

        def statfs(self, path: str) -> dict[str, Any]:
            info = os.statvfs(path)
            return {key: getattr(info, key) for key in ("f_bavail", "f_bfree", "f_blocks",
                    "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize",
                    "f_namemax")}  # fmt: skip

    FUSE(Loopback(backing), mountpoint, foreground=True, nothreads=False)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3])
