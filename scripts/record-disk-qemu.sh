#!/usr/bin/env bash
# record-disk-qemu.sh: records the disk collector's SYSFS script and lsblk on a real kernel with real
# udev, in QEMU, into plugins/disk/fixtures/qemu-debian12-udev/ (sysfs.txt, lsblk.json,
# udev-data.txt). Not run by the tests (about 3 minutes with debootstrap; the boot alone ~50 s
# under TCG): the tests read what it recorded.
#
#   scripts/record-disk-qemu.sh [WORKDIR]    (root; default WORKDIR /tmp/record-disk-qemu)
#
# A Debian 12 minbase (udev, util-linux, linux-image-amd64) by debootstrap, booted by
# qemu-system-x86_64 with its own kernel and initrd and init=/record.sh, which starts udevd,
# settles, runs the script (read out of plugins/disk/src/lib.rs) and lsblk, prints them to the
# serial console and powers off. The disks: AHCI SATA with a model and WWN, a DVD drive,
# virtio-scsi with a unit serial and an NAA WWN, NVMe, USB storage, virtio-blk with a serial,
# the root (virtio-blk, no serial), and QEMU's floppy.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/record-disk-qemu}
out=plugins/disk/fixtures/qemu-debian12-udev
export DEBIAN_FRONTEND=noninteractive
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get install -y -qq --no-install-recommends qemu-system-x86 debootstrap
fi
mkdir -p "$work"
guest=$work/guest
if [ ! -e "$guest/usr/bin/lsblk" ]; then
  debootstrap --variant=minbase --include=udev,util-linux,linux-image-amd64,initramfs-tools,kmod \
    bookworm "$guest" http://deb.debian.org/debian
fi
python3 - "$guest/sysfs.sh" <<'PY'
import sys
s = open("plugins/disk/src/lib.rs").read()
a = s.index('pub const SYSFS: &str = r#"') + len('pub const SYSFS: &str = r#"')
open(sys.argv[1], "w").write(s[a:s.index('"#;', a)] + "\n")
PY
cat >"$guest/record.sh" <<'SH'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null; mount -t tmpfs run /run
for m in ahci nvme virtio_scsi sd_mod sr_mod usb_storage uas xhci_pci; do modprobe $m 2>/dev/null; done
/lib/systemd/systemd-udevd --daemon; udevadm trigger --action=add; udevadm settle -t 60; sleep 2; udevadm settle -t 30
echo ==SYSFS==; sh /sysfs.sh; echo "==RC $?=="
echo ==LSBLK==; lsblk -J -b -d -o NAME,SIZE,MODEL,SERIAL,ROTA,TYPE,TRAN,REV,WWN
echo ==UDEV==; for f in /run/udev/data/b*; do echo "--- $f"; cat "$f"; done
echo ==UNAME==; uname -r; lsblk --version
echo ==END==
echo o > /proc/sysrq-trigger
sleep 10
SH
chmod +x "$guest/record.sh"
for i in 1 2 3 4 5; do truncate -s 64M "$work/d$i.img"; done
rm -f "$work/root.img"
mke2fs -q -t ext4 -L guestroot -d "$guest" "$work/root.img" 1500M
kernel=$(find "$guest/boot" -name 'vmlinuz-*' | sort | tail -1)
initrd=$(find "$guest/boot" -name 'initrd.img-*' | sort | tail -1)
# TCG: this machine's nested KVM stopped at the kernel's start
timeout 600 qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$initrd" \
  -append "root=LABEL=guestroot ro console=ttyS0 init=/record.sh quiet" \
  -drive "file=$work/root.img,if=virtio,format=raw" \
  -device ahci,id=ahci -drive "if=none,id=d1,file=$work/d1.img,format=raw" \
  -device ide-hd,drive=d1,bus=ahci.0,serial=SATA-SN-0001,model="INTEL SSDSC2KB480G8",wwn=0x55cd2e415123abcd,rotation_rate=1 \
  -device ide-cd,bus=ahci.1 \
  -device virtio-scsi-pci,id=scsi0 -drive "if=none,id=d2,file=$work/d2.img,format=raw" \
  -device scsi-hd,drive=d2,bus=scsi0.0,serial=SCSI-SN-0002,vendor=SEAGATE,product=ST4000NM0035,wwn=0x5000c500a1b2c3d4,rotation_rate=7200 \
  -drive "if=none,id=d3,file=$work/d3.img,format=raw" -device nvme,serial=NVME-SN-0003,drive=d3 \
  -device qemu-xhci -drive "if=none,id=d4,file=$work/d4.img,format=raw" -device usb-storage,drive=d4,serial=USB-SN-0004 \
  -drive "if=none,id=d5,file=$work/d5.img,format=raw" -device virtio-blk-pci,drive=d5,serial=VIRTIO-SN-5 |
  tr -d '\r' >"$work/serial.txt"
section() { sed -n "/^==$1==\$/,/^==$2\$/p" "$work/serial.txt" | sed '1d;$d'; }
mkdir -p "$out"
section SYSFS 'RC 0==' >"$out/sysfs.txt"
section LSBLK 'UDEV==' >"$out/lsblk.json"
section UDEV 'UNAME==' >"$out/udev-data.txt"
if [ ! -s "$out/sysfs.txt" ] || [ ! -s "$out/lsblk.json" ]; then
  echo "no recording: see $work/serial.txt" >&2
  exit 1
fi
echo "recorded into $out ($(sed -n '/^==UNAME==$/,/^==END==$/p' "$work/serial.txt" | sed '1d;$d' | tr '\n' ' '))"
