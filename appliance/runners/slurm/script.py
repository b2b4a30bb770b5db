"""The batch script every SLURM job of the appliance runs: one constant text.

Nothing of a job is ever pasted into it. ``sbatch SCRIPT ARG...`` hands the arguments to
the script as its positional parameters, an argv like any other, so a value reaches the
tool exactly as it was (spaces, quotes, ``$(...)``, newlines and all):

    WORKDIR STEP STDOUT STDERR NAME N VAR=VALUE (N times) -- PROGRAM ARG...

The script goes to the work directory, runs the program with a clean environment (PATH
and the step's variables only), its stdout and stderr into the step's files, passes a
SIGTERM (scancel, a time limit) on to it, marks its start (``.started-STEP`` in the
record folder) and records its end in the step's exit record,
as every backend does (``.exit.json``, ``.exit-N.json`` in the job's record folder,
``<jobs>/.records/<job>``, out of the job's reach). The scheduler made the step's stdout
and stderr files just before (fresh regular files, see ``appliance.safefs``), so the
redirections write into them, never through something an earlier step left. In the ``docker`` mode the
program is ``docker run ... --name NAME``: a SIGTERM kills the container (it is not in the
job's cgroup, so SLURM alone would leave it running), and whether the kernel killed it
for memory is read from the engine before the container is removed.
"""

from __future__ import annotations

COMMON = r"""#!/bin/bash
# The appliance's SLURM step (appliance/runners/slurm/script.py). Every value arrives as
# an argument: WORKDIR STEP STDOUT STDERR NAME N VAR=VALUE... -- PROGRAM ARG...
set -u
workdir=$1 step=$2 out=$3 err=$4 name=$5 nenv=$6
shift 6
vars=("${@:1:$nenv}")
shift "$nenv"
[ "${1-}" = "--" ] && shift
cd -- "$workdir" || exit 126
records="${workdir%/*}/.records/${workdir##*/}"
# that it started: the scheduler reads this beside the exit records, asking SLURM nothing
mkdir -p -- "$records" && : >"$records/.started-$step"
record() {  # CODE OOM: the step's exit record, written whole or not at all
  local file
  mkdir -p -- "$records" || return
  file="$records/.exit.json"
  [ "$step" = 0 ] || file="$records/.exit-$step.json"
  printf '{"exit_code": %d, "message": "", "oom": %s}' "$1" "$2" >"$file.tmp" && mv -f -- "$file.tmp" "$file"
}
"""

NONE = (
    COMMON
    + r"""
/usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin "${vars[@]}" "$@" >"$out" 2>"$err" </dev/null &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
wait "$child"
code=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done
record "$code" false
exit "$code"
"""
)

DOCKER = (
    COMMON
    + r"""
export PATH=/usr/local/bin:/usr/bin:/bin
"$@" >"$out" 2>"$err" </dev/null &
child=$!
trap 'docker kill "$name" >/dev/null 2>&1; kill -TERM "$child" 2>/dev/null' TERM
wait "$child"
code=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done
oom=$(docker inspect --format '{{.State.OOMKilled}}' "$name" 2>/dev/null)
[ "$oom" = true ] || oom=false
docker rm -f "$name" >/dev/null 2>&1
record "$code" "$oom"
exit "$code"
"""
)

SCRIPTS = {"none": NONE, "docker": DOCKER}
