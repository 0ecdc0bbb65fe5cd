#!/usr/bin/env bash
# apt-get for the CI installers, which run at the same time (.ci/run): one apt-get at a time on this
# machine (apt's own lock makes a second one fail at once instead of waiting), and dpkg's lock waited for.
# Usage: bash .ci/apt.sh update|install|download ... (the arguments apt-get takes)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
exec flock /var/lock/deployctl-ci-apt.lock apt-get -o DPkg::Lock::Timeout=600 "$@"
