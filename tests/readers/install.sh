#!/usr/bin/env bash
# Independent Measurement Set readers for the tests: wsclean, aoflagger and taql (Debian's
# wsclean, aoflagger and casacore-tools, with libcasa-derivedmscal7 for taql's mscal functions),
# which share no code with pyuvdata or this project.
#
#   tests/readers/install.sh install   # installs them if missing (Debian, needs root); quiet
#   tests/readers/install.sh check     # exit 0 if this machine has them or can install them;
#                                      # else prints why not
#
# Logs live in $DSA110MS_READERS_DIR (default /tmp/dsa110ms-readers). Idempotent: once the three
# commands are on PATH, install does nothing.
set -euo pipefail

DIR=${DSA110MS_READERS_DIR:-/tmp/dsa110ms-readers}
PACKAGES=(wsclean aoflagger casacore-tools libcasa-derivedmscal7)
COMMANDS=(wsclean aoflagger taql)
# taql loads mscal (derived MS quantities: hour angle, azimuth/elevation) from this library
LIBRARY=libcasa_derivedmscal

have_all() {
    local cmd
    for cmd in "${COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null || return 1
    done
    ldconfig -p | grep -q "$LIBRARY"
}

why_not() {
    # Prints why this machine cannot have the readers; nothing if it can.
    if have_all; then
        return
    elif [[ $(id -u) -ne 0 ]]; then
        echo "not root: installing ${PACKAGES[*]} with apt-get needs root"
    elif ! command -v apt-get >/dev/null; then
        echo "no ${COMMANDS[*]} and no apt-get to install ${PACKAGES[*]}"
    fi
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
        --no-install-recommends "${PACKAGES[@]}" >>"$DIR/apt.log" 2>&1
}

install() {
    if have_all; then
        return
    fi
    local reason
    reason=$(why_not)
    if [[ -n $reason ]]; then echo "cannot install the readers here: $reason" >&2; exit 2; fi
    mkdir -p "$DIR"
    : >"$DIR/apt.log"
    # a machine whose package lists are missing or stale finds nothing: update once, then retry
    if ! apt_install; then
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q \
            >>"$DIR/apt.log" 2>&1 && apt_install ||
            { echo "apt-get install ${PACKAGES[*]} failed, see $DIR/apt.log" >&2; exit 1; }
    fi
    have_all || { echo "installed ${PACKAGES[*]}, yet ${COMMANDS[*]} or $LIBRARY still missing" >&2; exit 1; }
}

case ${1:-} in
    install) install ;;
    check) reason=$(why_not); if [[ -n $reason ]]; then echo "$reason"; exit 1; fi ;;
    *) echo "usage: $0 install|check" >&2; exit 64 ;;
esac
