"""Runs one step of a job and records how it ended.

    python -I -S jobwrap.py DIR [STEP STDOUT STDERR] -- ARGV

The local worker starts each step through this small wrapper, in the job's directory and
in a session of its own. The wrapper sends the command's stdout and stderr to files
(``stdout`` and ``stderr`` unless named; never through a symlink or into a FIFO that an
earlier step left), passes SIGTERM and SIGINT on to it, and writes the exit code into
the job's record folder (the step's exit record, ``.exit.json`` for the first step;
minus the signal number if a signal killed it). Because the wrapper, not the
worker, writes the record, a step's end is known even if the worker was restarted while
it ran.

Every job waits for this wrapper to start, so it imports only what the interpreter has
already loaded (``os``, ``sys`` and the C ``_signal``; ``subprocess``, ``signal``, ``json``
and ``pathlib`` would cost 15 ms more on each job) and the worker runs it with ``-I -S``
(no site packages): about 8 ms from exec to the command's start.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # not ``signal``: that imports enum
import os
import sys

EXIT_RECORD = ".exit.json"
"""Written into a job's record folder by the backend when a step ends, so that its exit
code survives the backend's own restart and the scheduler's (``.exit-N.json`` for step
N > 0)."""
RECORDS = ".records"
"""The folder, beside the jobs' directories, that holds each job's records."""


def record_dir(workdir: str | os.PathLike[str]) -> str:
    """Where the appliance keeps a job's own files (exit records, the options of a
    container waiting for a slot): ``<jobs>/.records/<job>``, beside the job's directory,
    where no process of the job can write (only the job's directory is mounted)."""
    head, tail = os.path.split(os.path.normpath(os.fspath(workdir)))
    return os.path.join(head, RECORDS, tail)


def exit_record_name(step: int = 0) -> str:
    return EXIT_RECORD if step == 0 else f".exit-{int(step)}.json"


def write_exit_record(
    path: str | os.PathLike[str], exit_code: int, message: str = "", *, step: int = 0,
    oom: bool = False,
) -> None:  # fmt: skip
    """Atomically record how a step ended (survives restarts of every process). The one
    writer of exit records: every backend calls it."""
    if message or oom:
        import json  # only on the rare ends that carry a message

        data: dict[str, object] = {"exit_code": int(exit_code), "message": message}
        if oom:
            data["oom"] = True
        text = json.dumps(data)
    else:
        text = f'{{"exit_code": {int(exit_code)}, "message": ""}}'  # what json.dumps gives
    name = exit_record_name(step)
    folder = record_dir(path)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    temporary = os.path.join(folder, name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as sink:
        sink.write(text)
    os.replace(temporary, os.path.join(folder, name))


_STREAM = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # never through a symlink, or a FIFO


def _fail(workdir: str, step: int, stderr: str, code: int, message: str) -> int:
    try:
        fd = os.open(os.path.join(workdir, stderr), _STREAM | os.O_APPEND)
        os.write(fd, f"{message}\n".encode())
        os.close(fd)
    except OSError:
        pass
    write_exit_record(workdir, code, message, step=step)
    return code


def _fresh(path: str) -> None:
    """An empty regular file at ``path``: whatever an earlier step left there (a symlink,
    a FIFO) is removed first, never written through."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise OSError(21, f"{path} is a folder") from None
    os.close(os.open(path, _STREAM | os.O_CREAT | os.O_EXCL, 0o644))


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") not in (1, 4) or argv[-1] == "--":
        print("usage: python -I -S jobwrap.py DIR [STEP STDOUT STDERR] -- COMMAND [ARG...]",
              file=sys.stderr)  # fmt: skip
        return 2
    split = argv.index("--")
    workdir = argv[0]
    step, stdout, stderr = (
        (int(argv[1]), argv[2], argv[3]) if split == 4 else (0, "stdout", "stderr")
    )
    command = argv[split + 1 :]
    os.chdir(workdir)
    flags = os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW
    streams = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.path.join(workdir, stdout), flags, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, os.path.join(workdir, stderr), flags, 0o644),
    ]
    try:
        for stream in (stdout, stderr):  # there even if the command never starts
            _fresh(os.path.join(workdir, stream))
    except OSError as exc:
        write_exit_record(workdir, 126, f"cannot write the step's output: {exc.strerror or exc}",
                          step=step)  # fmt: skip
        return 126
    try:
        # Python ignores SIGPIPE and SIGXFSZ; the command gets the defaults back.
        child = os.posix_spawnp(
            command[0], command, dict(os.environ), file_actions=streams,
            setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ),
        )  # fmt: skip
    except FileNotFoundError:
        return _fail(workdir, step, stderr, 127, f"{command[0]}: command not found")
    except OSError as exc:  # not executable, not a program, ...
        return _fail(
            workdir, step, stderr, 126, f"{command[0]}: cannot be executed: {exc.strerror}"
        )

    def forward(signum: int, frame: object) -> None:
        try:  # noqa: SIM105 (contextlib would cost milliseconds at each job's start)
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    _signal.signal(_signal.SIGTERM, forward)
    _signal.signal(_signal.SIGINT, forward)
    _, status = os.waitpid(child, 0)  # retried after a forwarded signal (PEP 475)
    write_exit_record(workdir, os.waitstatus_to_exitcode(status), step=step)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
