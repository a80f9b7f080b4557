#!/bin/sh
# meson install step for /etc/monkeyd/monkeyd.conf: the config belongs to
# the operator once it exists, so it is installed only when absent, never
# over an edited file (an upgrade must not reset a fleet's settings). The
# shipped reference is installed beside the data files every time
# (monkeyd.conf.example), to diff against.
#
# usage: install-config.sh SOURCE CONFDIR   (CONFDIR without DESTDIR)
set -eu

src=$1
confdir=$2

# meson exports DESTDIR for `meson install --destdir`; older ones only the
# prefix with DESTDIR prepended, from which DESTDIR is the difference.
destdir=${DESTDIR-}
if [ -z "$destdir" ] && [ -n "${MESON_INSTALL_DESTDIR_PREFIX-}" ] && [ -n "${MESON_INSTALL_PREFIX-}" ]; then
    destdir=${MESON_INSTALL_DESTDIR_PREFIX%"$MESON_INSTALL_PREFIX"}
fi

dir=$destdir$confdir
dest=$dir/monkeyd.conf

# 0755: the directory holds other files later (drop-ins, secret files
# with their own 0600); the config itself is 0600.
install -d -m 0755 "$dir"
if [ -e "$dest" ] || [ -L "$dest" ]; then
    echo "Keeping $dest (it exists; the shipped one is monkeyd.conf.example)"
    exit 0
fi
# Write aside, then rename: an interrupted install leaves no half file
# that a later run would keep.
tmp=$dir/.monkeyd.conf.install.$$
install -m 0600 "$src" "$tmp"
mv -f "$tmp" "$dest"
echo "Installing $dest (observe-only default, mode 0600)"
