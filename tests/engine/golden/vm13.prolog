CLONE onefrontend:/srv/cloud/images/ubuntu/ubuntu.img host02:/srv/cloud/one/var/13/images/disk.0 2048
