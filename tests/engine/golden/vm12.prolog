CLONE onefrontend:/srv/cloud/images/ttylinux/ttylinux.img host01:/srv/cloud/one/var/12/images/disk.0
MKSWAP 1024 host01:/srv/cloud/one/var/12/images/disk.1
MKIMAGE 4096 ext3 host01:/srv/cloud/one/var/12/images/disk.2
LN onefrontend:/srv/cloud/images/data/db.img host01:/srv/cloud/one/var/12/images/disk.3
CLONE http://imgsrv.example.org/debian5.img host01:/srv/cloud/one/var/12/images/disk.4
CONTEXT /srv/cloud/one/var/12/context.sh /srv/cloud/ctx/init.sh /srv/cloud/ctx/id_dsa.pub host01:/srv/cloud/one/var/12/images/disk.5
