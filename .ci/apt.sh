# Sourced by the other `.ci` scripts: `apt_install PKG...` installs Debian's packages (after
# `apt-get update`), through sudo when not root; fails with a clear message when this user can
# do neither.

apt_install() {
    echo "installing $* from Debian's packages" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then
            sudo="sudo"
        else
            echo "error: $* missing and this user cannot install packages (not root, no sudo)" >&2
            return 1
        fi
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
