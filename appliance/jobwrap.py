"""Runs one job's command and records how it ended: ``python -m appliance.jobwrap DIR -- ARGV``.

The local worker starts each job through this small wrapper, in the job's directory and
in a session of its own. The wrapper sends the command's stdout and stderr to files,
passes SIGTERM and SIGINT on to it, and writes the exit code into the directory
(``.exit.json``; minus the signal number if a signal killed it). Because the wrapper, not
the worker, writes the record, a job's end is known even if the worker was restarted
while the job ran.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from appliance.jobdirs import write_exit_record


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m appliance.jobwrap DIR -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    workdir = Path(argv[0])
    command = argv[2:]
    with (workdir / "stdout").open("wb") as out, (workdir / "stderr").open("wb") as err:
        try:
            child = subprocess.Popen(
                command, cwd=workdir, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            err.write(f"{command[0]}: command not found\n".encode())
            write_exit_record(workdir, 127, f"{command[0]}: command not found")
            return 127
        except PermissionError:
            err.write(f"{command[0]}: permission denied\n".encode())
            write_exit_record(workdir, 126, f"{command[0]}: cannot be executed")
            return 126

        def forward(signum: int, frame: FrameType | None) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = child.wait()
    write_exit_record(workdir, code)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
