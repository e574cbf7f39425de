#!/bin/sh
# shell-tools.sh N1 N2 N3: everyday shell tools on three mounts of one
# cluster (linearizable reads): each change made through one mount is read
# back through the others as soon as the command that made it returns.
set -u
n1=$1 n2=$2 n3=$3
fails=0
step=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    step=$((step + 1))
    if [ "$2" = "$3" ]; then
        echo "ok $step - $1"
    else
        echo "not ok $step - $1"
        echo "#   expected: $(printf '%s' "$2" | od -c | head -5)"
        echo "#   actual:   $(printf '%s' "$3" | od -c | head -5)"
        fails=$((fails + 1))
    fi
}
run() { # run DESCRIPTION COMMAND...: the command must succeed
    d=$1
    shift
    step=$((step + 1))
    if out=$("$@" 2>&1); then
        echo "ok $step - $d"
    else
        echo "not ok $step - $d: $out"
        fails=$((fails + 1))
    fi
}
fail() { # fail DESCRIPTION COMMAND...: the command must fail
    d=$1
    shift
    step=$((step + 1))
    if out=$("$@" 2>&1); then
        echo "not ok $step - $d: succeeded"
        fails=$((fails + 1))
    else
        echo "ok $step - $d ($out)"
    fi
}

echo hello > "$n1/greeting"
check "echo on n1, cat on n2" hello "$(cat "$n2/greeting")"
check "cat on n3" hello "$(cat "$n3/greeting")"

printf 'one\n' > "$n2/log"
printf 'two\n' >> "$n3/log"
printf 'three\n' >> "$n1/log"
check "printf >> appends from three nodes" "one
two
three" "$(cat "$n2/log")"

run "mkdir -p" mkdir -p "$n1/etc/app/conf.d"
check "mkdir -p visible elsewhere" "conf.d" "$(ls "$n3/etc/app")"
echo "port=80" > "$n2/etc/app/conf.d/web.conf"
run "cp" cp "$n3/etc/app/conf.d/web.conf" "$n3/etc/app/web.conf.bak"
check "cp copy read on n1" "port=80" "$(cat "$n1/etc/app/web.conf.bak")"
run "mv" mv "$n1/etc/app/web.conf.bak" "$n1/etc/app/web.conf.old"
fail "old name gone" cat "$n2/etc/app/web.conf.bak"
check "mv target on n2" "port=80" "$(cat "$n2/etc/app/web.conf.old")"
run "sed -i" sed -i 's/80/8080/' "$n2/etc/app/conf.d/web.conf"
check "sed -i result on n3" "port=8080" "$(cat "$n3/etc/app/conf.d/web.conf")"

run "touch" touch "$n1/empty"
check "touch: empty file on n2" "0" "$(stat -c %s "$n2/empty")"
run "touch -d" touch -d '2001-02-03 04:05:06 UTC' "$n3/empty"
check "mtime set on n3, read on n1" "981173106" "$(stat -c %Y "$n1/empty")"
run "touch -a -d" touch -a -d '2002-01-01 00:00:00 UTC' "$n1/empty"
check "atime set, mtime kept, on n2" "1009843200 981173106" \
    "$(stat -c '%X %Y' "$n2/empty")"
run "touch -m -d" touch -m -d '2003-01-01 00:00:00 UTC' "$n2/empty"
check "mtime set, atime kept, on n3" "1009843200 1041379200" \
    "$(stat -c '%X %Y' "$n3/empty")"
run "touch (now)" touch "$n3/empty"
check "touch: atime = mtime = ctime, on n1" "$(stat -c %z "$n1/empty")" \
    "$(stat -c %x "$n1/empty")"
check "touch: mtime = ctime, on n2" "$(stat -c %z "$n2/empty")" \
    "$(stat -c %y "$n2/empty")"
run "chmod" chmod 640 "$n1/greeting"
check "mode on n3" "640" "$(stat -c %a "$n3/greeting")"
run "chown" chown 1234:5678 "$n2/greeting"
check "owner on n1" "1234:5678" "$(stat -c %u:%g "$n1/greeting")"

run "ln -s" ln -s etc/app/conf.d/web.conf "$n2/web"
check "readlink on n3" "etc/app/conf.d/web.conf" "$(readlink "$n3/web")"
check "cat through the link on n1" "port=8080" "$(cat "$n1/web")"

check "ls -l lists the root on n3" "empty etc greeting log web" \
    "$(ls "$n3" | tr '\n' ' ' | sed 's/ $//')"
check "ls -la shows /.raftfs" ".raftfs" "$(ls -a "$n1" | grep raftfs)"
check "ls -i agrees across nodes" "$(ls -i "$n1/greeting" | cut -d' ' -f1)" \
    "$(ls -i "$n3/greeting" | cut -d' ' -f1)"

run "rm" rm "$n3/etc/app/web.conf.old"
fail "rmdir of a non-empty directory" rmdir "$n1/etc/app"
run "rm -r" rm -r "$n1/etc"
fail "removed tree gone on n2" ls "$n2/etc"
run "rmdir" sh -c "mkdir '$n2/d' && rmdir '$n3/d'"
fail "mkdir on an existing name" mkdir "$n1/greeting"

echo "v1" > "$n1/cfg"
echo "v2" > "$n2/cfg.tmp"
run "mv -f replaces atomically" mv -f "$n2/cfg.tmp" "$n2/cfg"
check "replaced value on n3" "v2" "$(cat "$n3/cfg")"
# noclobber: the shell's O_EXCL lock
fail "set -C refuses an existing file" sh -c "set -C; echo x > '$n3/cfg'"
run "set -C creates a new file" sh -c "set -C; echo \$\$ > '$n3/lockfile'"
fail "/.raftfs/status is read-only" sh -c "echo x > '$n1/.raftfs/status'"
fail "/.raftfs files cannot be removed" rm "$n1/.raftfs/leader"
check "/.raftfs/members lists three" "3" "$(wc -l < "$n2/.raftfs/members")"
check "df shows the mount" "fuse.raftfs" "$(df --output=fstype "$n1" | tail -1)"

# Hard links: nlink is replicated state, the same on every node.
echo linked > "$n1/orig"
run "ln" ln "$n1/orig" "$n1/hard"
for n in "$n1" "$n2" "$n3"; do
    check "stat -c %h: two names on $n" "2 2" \
        "$(stat -c %h "$n/orig") $(stat -c %h "$n/hard")"
done
check "one inode, two names" "$(stat -c %i "$n3/orig")" \
    "$(stat -c %i "$n3/hard")"
run "rm one name" rm "$n2/orig"
for n in "$n1" "$n2" "$n3"; do
    check "the other name still reads on $n" "linked 1" \
        "$(cat "$n/hard") $(stat -c %h "$n/hard")"
done
run "rm the last name" rm "$n3/hard"
fail "gone everywhere" cat "$n1/hard"

# Fifos, sockets and devices: the kernel serves them; the cluster keeps
# their type and number.
run "mkfifo" mkfifo "$n1/fifo"
check "a fifo on n2" "fifo" "$(stat -c %F "$n2/fifo")"
check "the fifo carries data between two processes on n1" "through" \
    "$(sh -c "echo through > '$n1/fifo'" & cat "$n1/fifo"; wait)"
run "mknod c" mknod "$n1/null" c 1 3
check "major:minor on n3" "character special file 1:3" \
    "$(stat -c '%F %Hr:%Lr' "$n3/null")"

# cp -a and mv between two mounts copy extended attributes: the virtual
# user.raftfs.revision must not be listed, or they try to set it (EPERM)
# and print a warning.
echo moved > "$n1/xa"
check "cp -a from n1 to n2 prints nothing" "" \
    "$(cp -a "$n1/xa" "$n2/xa.copy" 2>&1)"
check "mv from n2 to n3 prints nothing" "" \
    "$(mv "$n2/xa.copy" "$n3/xa.moved" 2>&1)"
check "the moved copy reads on n1" "moved" "$(cat "$n1/xa.moved")"

# Extended attributes are replicated, and cp -a, rsync -aX and mv between
# two mounts copy them without a word: there is no SELinux label (and no ACL
# on these files) to copy: those names answer ENODATA; the revision is unlisted.
if command -v rsync >/dev/null && command -v getfattr >/dev/null &&
    command -v setfattr >/dev/null; then
    attrs() { # every attribute under $1, with paths relative to it
        (cd "$1" && getfattr -h -d -m - -R . 2>&1)
    }
    mkdir -p "$n1/xt/sub"
    echo a > "$n1/xt/a"
    echo b > "$n1/xt/sub/b"
    ln -s a "$n1/xt/link"
    run "setfattr user.k" setfattr -n user.k -v v1 "$n1/xt/a"
    run "setfattr of an empty value" setfattr -n user.empty "$n1/xt/a"
    run "setfattr on a directory" setfattr -n user.d -v dir "$n1/xt/sub"
    run "setfattr trusted.t (root)" setfattr -n trusted.t -v tv "$n1/xt/sub/b"
    check "getfattr on n2 reads what n1 set" 'user.k="v1"' \
        "$(getfattr -n user.k "$n2/xt/a" 2>/dev/null | grep user.k)"
    check "getfattr -d -m - lists the four on n3" 4 \
        "$(attrs "$n3/xt" | grep -c '=')"
    check "cp -a from n1 to n2 prints nothing" "" \
        "$(cp -a "$n1/xt" "$n2/xt.cp" 2>&1)"
    check "diff -r of the cp -a copy" "" "$(diff -r "$n1/xt" "$n2/xt.cp" 2>&1)"
    check "getfattr of the cp -a copy" "$(attrs "$n1/xt")" "$(attrs "$n3/xt.cp")"
    check "rsync -aX from n1 to n3 prints nothing" "" \
        "$(rsync -aX "$n1/xt/" "$n3/xt.rs/" 2>&1)"
    check "diff -r of the rsync copy" "" "$(diff -r "$n1/xt" "$n3/xt.rs" 2>&1)"
    check "getfattr of the rsync copy" "$(attrs "$n1/xt")" "$(attrs "$n2/xt.rs")"
    check "mv from n2 to n1 prints nothing" "" \
        "$(mv "$n2/xt.rs" "$n1/xt.mv" 2>&1)"
    check "getfattr of the moved tree" "$(attrs "$n1/xt")" "$(attrs "$n3/xt.mv")"
    run "setfattr -x" setfattr -x user.k "$n3/xt/a"
    check "removed on n1" "" "$(getfattr -n user.k "$n1/xt/a" 2>/dev/null)"
else
    echo "# skipping the xattr copies: rsync, getfattr or setfattr is" \
        "missing (mount-tools/setup installs the packages rsync and attr)"
fi

# setcap on one node, getcap on another; cp -a and rsync -aX carry the
# capabilities (as root); a write anywhere takes them away everywhere.
if command -v setcap >/dev/null && command -v getcap >/dev/null &&
    command -v rsync >/dev/null; then
    printf '#!/bin/sh\n' > "$n1/prog"
    chmod 755 "$n1/prog"
    run "setcap on n1" setcap cap_net_bind_service=ep "$n1/prog"
    check "getcap on n2" "$n2/prog cap_net_bind_service=ep" \
        "$(getcap "$n2/prog")"
    check "cp -a of it from n1 to n2 prints nothing" "" \
        "$(cp -a "$n1/prog" "$n2/prog.cp" 2>&1)"
    check "getcap of the cp -a copy on n3" \
        "$n3/prog.cp cap_net_bind_service=ep" "$(getcap "$n3/prog.cp")"
    check "rsync -aX of it from n2 to n3 prints nothing" "" \
        "$(rsync -aX "$n2/prog" "$n3/prog.rs" 2>&1)"
    check "getcap of the rsync copy on n1" \
        "$n1/prog.rs cap_net_bind_service=ep" "$(getcap "$n1/prog.rs")"
    echo "# edited" >> "$n2/prog"
    check "an append on n2 clears them on n3" "" "$(getcap "$n3/prog")"
else
    echo "# skipping setcap and getcap: not installed (mount-tools/setup" \
        "installs the package libcap2-bin)"
fi

# POSIX ACLs: setfacl on one node, getfacl on another; chmod moves the
# mask; default ACLs are inherited and replace the umask; cp -a and
# rsync -aAX between two mounts keep them; setfacl -b takes them away. (Enforcement, as another user: test_posix_acls.)
if command -v setfacl >/dev/null && command -v getfacl >/dev/null &&
    command -v rsync >/dev/null; then
    acls() { # the access ACL entries of $1 (getfacl without the header)
        getfacl -cpa "$1" 2>&1
    }
    echo x > "$n1/af"
    chmod 640 "$n1/af"
    run "setfacl -m u:nobody:r on n1" setfacl -m u:nobody:r "$n1/af"
    check "getfacl on n2" "user::rw-
user:nobody:r--
group::r--
mask::r--
other::---" "$(acls "$n2/af")"
    check "ls -l on n3 shows the + and the mask" "-rw-r-----+" \
        "$(ls -l "$n3/af" | cut -d' ' -f1)"
    run "chmod 600 on n3" chmod 600 "$n3/af"
    check "the mask followed, on n1" "user::rw-
user:nobody:r--	#effective:---
group::r--	#effective:---
mask::---
other::---" "$(acls "$n1/af")"
    run "setfacl -m m::rx on n2" setfacl -m m::rx "$n2/af"
    check "the mode's group bits are the mask, on n1" "650" \
        "$(stat -c %a "$n1/af")"
    fail "setfacl of a default ACL on a file" setfacl -d -m u:nobody:r \
        "$n1/af"
    # Default ACLs: inherited at create on every node, and the umask does
    # not count under one (it does elsewhere).
    mkdir "$n1/dacl"
    chmod 755 "$n1/dacl"
    run "setfacl -d -m u:nobody:rx on n1" setfacl -d -m u:nobody:rx \
        "$n1/dacl"
    check "getfacl -d on n2" "user::rwx
user:nobody:r-x
group::r-x
mask::r-x
other::r-x" "$(getfacl -cpd "$n2/dacl" 2>&1)"
    run "mkdir under it on n2 (umask 077)" sh -c "umask 077; mkdir '$n2/dacl/sub'"
    check "the new directory's ACL, on n3" "user::rwx
user:nobody:r-x
group::r-x
mask::r-x
other::r-x" "$(acls "$n3/dacl/sub")"
    check "and its default ACL, on n1" "$(getfacl -cpd "$n1/dacl" 2>&1)" \
        "$(getfacl -cpd "$n1/dacl/sub" 2>&1)"
    check "its mode ignores the umask" "755" "$(stat -c %a "$n1/dacl/sub")"
    run "a file under it on n3 (umask 077)" \
        sh -c "umask 077; echo f > '$n3/dacl/sub/f'"
    check "the file's ACL, masked by the create mode 0666, on n1" "user::rw-
user:nobody:r-x	#effective:r--
group::r-x	#effective:r--
mask::r--
other::r--" "$(acls "$n1/dacl/sub/f")"
    check "its mode, on n2" "644" "$(stat -c %a "$n2/dacl/sub/f")"
    run "a file outside it on n1 (umask 077)" \
        sh -c "umask 077; echo f > '$n1/noacl'"
    check "the umask applies there, on n2" "600" "$(stat -c %a "$n2/noacl")"
    run "mkdir outside it on n2 (umask 027)" \
        sh -c "umask 027; mkdir '$n2/noacl.d'"
    check "the umask applies, on n3" "750" "$(stat -c %a "$n3/noacl.d")"
    # While a create is still staged (open, nothing written), stat on the
    # same node shows the mode apply will give.
    check "a staged create under a default ACL shows 644" "644" \
        "$(sh -c "umask 077; exec 3>'$n2/dacl/sub/st'; stat -c %a '$n2/dacl/sub/st'")"
    check "a staged create elsewhere shows the umask's 600" "600" \
        "$(sh -c "umask 077; exec 3>'$n2/st'; stat -c %a '$n2/st'")"
    check "and so does it after its create applied, on n3" "600 644" \
        "$(stat -c %a "$n3/st" "$n3/dacl/sub/st" | tr '\n' ' ' | sed 's/ $//')"
    tree_acls() { # every ACL under $1, access and default, paths relative
        (cd "$1" && getfacl -R -p . 2>&1)
    }
    check "cp -a of the tree from n1 to n2 prints nothing" "" \
        "$(cp -a "$n1/dacl" "$n2/dacl.cp" 2>&1)"
    check "getfacl -R of the cp -a copy on n3" "$(tree_acls "$n1/dacl")" \
        "$(tree_acls "$n3/dacl.cp")"
    check "rsync -aAX of the tree from n2 to n3 prints nothing" "" \
        "$(rsync -aAX "$n2/dacl/" "$n3/dacl.rs/" 2>&1)"
    check "getfacl -R of the rsync copy on n1" "$(tree_acls "$n1/dacl")" \
        "$(tree_acls "$n1/dacl.rs")"
    run "setfacl -k on n3" setfacl -k "$n3/dacl"
    check "no default ACL left, on n1" "" "$(getfacl -cpd "$n1/dacl" 2>&1)"
    check "cp -a of it from n1 to n2 prints nothing" "" \
        "$(cp -a "$n1/af" "$n2/af.cp" 2>&1)"
    check "getfacl of the cp -a copy on n3" "$(acls "$n1/af")" \
        "$(acls "$n3/af.cp")"
    check "rsync -aAX of it from n2 to n3 prints nothing" "" \
        "$(rsync -aAX "$n2/af" "$n3/af.rs" 2>&1)"
    check "getfacl of the rsync copy on n1" "$(acls "$n1/af")" \
        "$(acls "$n1/af.rs")"
    run "setfacl -b on n3" setfacl -b "$n3/af"
    check "no ACL left, on n2 (the owning group's entry is back)" "user::rw-
group::r--
other::---" "$(acls "$n2/af")"
    check "ls -l on n1: no +" "-rw-r-----" "$(ls -l "$n1/af" | cut -d' ' -f1)"
else
    echo "# skipping setfacl and getfacl: not installed (mount-tools/setup" \
        "installs the package acl)"
fi

# A file opened (created) and not yet written exists for every name
# operation on its node, as on ext4: its create is committed first.
check "mv of a file still open from its creation, seen on n2" "moved" \
    "$(sh -c "exec 3>'$n1/opened'; mv '$n1/opened' '$n1/moved' &&
        ls '$n2' | grep -x -e opened -e moved")"
check "written through its descriptor after the mv, read on n3" "late" \
    "$(sh -c "exec 3>'$n1/opened2'; mv '$n1/opened2' '$n1/moved2' &&
        echo late >&3 && exec 3>&- && cat '$n3/moved2'")"
check "rm of a file still open from its creation" "gone" \
    "$(sh -c "exec 3>'$n1/opened3'; rm '$n1/opened3' &&
        { test -e '$n2/opened3' || echo gone; }")"

echo "# $step checks, $fails failed"
[ "$fails" -eq 0 ]
