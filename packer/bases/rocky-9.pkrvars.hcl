# Rocky Linux 9: the vendor's GenericCloud qcow2 (cloud-init included), with its
# CHECKSUM file. Validated here, never downloaded here (no vendor downloads on this machine).
base                = "rocky-9"
base_image_url      = "https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2"
base_image_checksum = "file:https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2.CHECKSUM"
disk_size           = "10G"
