# AlmaLinux 9: the vendor's GenericCloud qcow2 (cloud-init included), with its
# CHECKSUM file. Validated here, never downloaded here (no vendor downloads on this machine).
base                = "alma-9"
base_image_url      = "https://repo.almalinux.org/almalinux/9/cloud/x86_64/images/AlmaLinux-9-GenericCloud-latest.x86_64.qcow2"
base_image_checksum = "file:https://repo.almalinux.org/almalinux/9/cloud/x86_64/images/CHECKSUM"
disk_size           = "10G"
