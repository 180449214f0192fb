#!/bin/sh
# npm run demo:linux — boots the Linux test guest (Linux 6.1 + busybox, fixtures/linux) to a root
# shell on its serial console.
#
# The guest is taken from VMCTL_LINUX_DIR (default ~/.cache/vmctl/linux/out); when it is not there
# it is built first with fixtures/linux/build.sh, which shows its phases and progress (the first
# build takes minutes; later ones reuse it).
#
# On a terminal: creates (once) and starts the VM "linux-demo" in your VMCTL_HOME and attaches its
# console: type commands; `poweroff -f` ends the VM; Ctrl-] detaches and leaves it running
# (`vmctl console linux-demo` attaches again, `vmctl delete linux-demo` removes it).
# Without a terminal (a pipe, CI): `vmctl run` boots a throw-away VM, prints its console up to the
# shell prompt and exits 0.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VMCTL="node $ROOT/bin/vmctl"
OUT=${VMCTL_LINUX_DIR:-$HOME/.cache/vmctl/linux/out}
NAME=linux-demo
PROMPT='vmctl-guest:[^ ]*# '

if [ ! -s "$OUT/Image" ] || [ ! -s "$OUT/initramfs.cpio.gz" ]; then
  echo "demo:linux: no Linux guest in $OUT yet; building it with fixtures/linux/build.sh (minutes the first time)" >&2
  bash "$ROOT/fixtures/linux/build.sh" "$OUT"
else
  echo "demo:linux: using the Linux guest in $OUT (rebuild: bash fixtures/linux/build.sh $OUT)" >&2
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-demo-linux.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
cat > "$DIR/$NAME.yaml" <<EOF
name: $NAME
cpus: 1
memory: 128MiB
boot:
  firmware: builtin
  kernel: $OUT/Image
  initrd: $OUT/initramfs.cpio.gz
  cmdline: "console=ttyS0 vmctl=shell"
shutdown:
  console: "poweroff -f\n"
  timeout: 30s
EOF

if [ ! -t 0 ] || [ ! -t 1 ]; then
  exec $VMCTL run -f "$DIR/$NAME.yaml" --until "$PROMPT" --timeout 10m
fi

if ! $VMCTL info "$NAME" >/dev/null 2>&1; then
  $VMCTL create -f "$DIR/$NAME.yaml"
fi
state=$($VMCTL info "$NAME" --json | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>console.log(JSON.parse(s).state))')
case $state in
  stopped|aborted) $VMCTL start "$NAME" ;;
  *) echo "demo:linux: VM $NAME is $state; attaching to its console (press Enter for a prompt)" >&2 ;;
esac
echo "demo:linux: 'poweroff -f' ends the VM; Ctrl-] detaches and leaves it running; no prompt? press Enter" >&2
exec $VMCTL console "$NAME"
