# Debian 12 (bookworm): the local base qcow2 made by ha_ingress_build.base_image.build_base
# from the Debian mirror alone. This is the default base, and the one CI bakes.
# Paths are relative to the repository root (run packer from there; bake() does).
base                = "debian-12"
base_image_url      = "build/base/debian-12.qcow2"
base_image_checksum = "file:build/base/debian-12.qcow2.SHA256SUMS"
