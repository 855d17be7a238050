#!/bin/sh
# board/scripts/add-user.sh DESTDIR NAME HOME -- adds the unprivileged
# account detad runs as (`user = NAME`) to the image's /etc/passwd and
# /etc/group, once: a system uid/gid (100..999) free in both files, no
# password, no shell. The spool and the Maildirs are handed to it by detad
# itself at start. Without DESTDIR/etc/passwd (not a full root file system)
# it says how to create the account on the board.
set -u
dest=$1 name=$2 home=$3
passwd=$dest/etc/passwd group=$dest/etc/group
if [ ! -f "$passwd" ]; then
    echo "note: $passwd not found; on the board create the account detad runs as:"
    echo "      adduser -S -H -D -h $home $name   (busybox), or set another \`user\` in detad.conf"
    exit 0
fi
if grep -q "^$name:" "$passwd"; then
    echo "account $name already in $passwd"
    exit 0
fi
id=100
while [ $id -lt 1000 ]; do
    if ! cut -d: -f3 "$passwd" | grep -qx "$id" &&
        { [ ! -f "$group" ] || ! cut -d: -f3 "$group" | grep -qx "$id"; }; then
        break
    fi
    id=$((id + 1))
done
[ $id -lt 1000 ] || { echo "add-user.sh: no free system id in $passwd" >&2; exit 1; }
echo "$name:x:$id:$id:detad mail server:$home:/bin/false" >>"$passwd"
[ -f "$group" ] && echo "$name:x:$id:" >>"$group"
echo "added account $name (uid/gid $id) to $passwd"
