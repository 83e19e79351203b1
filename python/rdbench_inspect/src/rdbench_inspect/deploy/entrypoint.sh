#!/bin/sh
# The sandbox container's first process (root): the scoring service as the scoring user, in
# the background, then nothing but waiting (Inspect execs the platform's and the agent's
# commands into the container).
set -eu
install -d -o rdbench -g rdbench -m 0755 /run/rdbench
runuser -u rdbench -- env -i \
  PATH=/opt/rdbench-venv/bin:/usr/bin:/bin \
  RDBENCH_HOME=/var/lib/rdbench \
  RDBENCH_SHIPPED_CALIBRATION=/var/lib/rdbench/shipped-calibration \
  /usr/local/libexec/rdbench serve --socket /run/rdbench/score.sock &
exec sleep infinity
