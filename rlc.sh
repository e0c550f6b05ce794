#!/usr/bin/env bash
# One-command set-up and run for rl_control (idempotent; quick once installed).
#   ./rlc.sh [ARGS...]       install into .venv, then run the main job:
#                            rl-control launch config/pendulum_sim.yaml [ARGS...]
#   ./rlc.sh test [ARGS...]  install into .venv (with test tools), then run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

venv="${RL_CONTROL_VENV:-.venv}"
python="${PYTHON:-python3}"
extras="ros,test"
stamp="$venv/.install-stamp"
wanted="$(cat setup.py rlc.sh | sha256sum | cut -d' ' -f1) $extras"

if [ ! -x "$venv/bin/python" ]; then
  echo "rlc.sh: creating virtual environment $venv" >&2
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "rlc.sh: installing rl_control and its dependencies into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # The CPU build of torch; any other spec would pull several GB of CUDA wheels.
  "$venv/bin/python" -m pip install --quiet "torch==2.13.0"
  "$venv/bin/python" -m pip install --quiet -e ".[$extras]"
  echo "$wanted" > "$stamp"
fi

# DDS discovery stays on this machine unless the user asks otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"

if [ "${1:-}" = "test" ]; then
  shift
  exec "$venv/bin/python" -m pytest "$@"
fi
exec "$venv/bin/rl-control" launch config/pendulum_sim.yaml "$@"
