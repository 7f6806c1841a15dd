# One source per place the image is built. Only `qemu.node` is built on a developer's
# machine and in CI; the others are validated (with clearly fake values) and built by
# whoever has the cloud account. All of them log in with the throwaway key of this build
# (local.ssh_private_key_file), authorised by the cloud-init user-data in local.seed_dir.

source "qemu" "node" {
  iso_url            = local.base_image_url
  iso_checksum       = local.base_image_checksum
  disk_image         = true
  use_backing_file   = false
  format             = "qcow2"
  disk_size          = var.disk_size
  disk_interface     = "virtio"
  disk_discard       = "unmap"
  disk_detect_zeroes = "unmap"
  disk_compression   = true
  net_device         = "virtio-net"
  accelerator        = var.accelerator
  cpus               = var.cpus
  memory             = var.memory
  headless           = var.headless
  vnc_bind_address   = "127.0.0.1"
  vm_name            = "${local.artifact_name}.qcow2"
  output_directory   = "${local.output_dir}/${var.base}"

  # NoCloud seed: a CD labelled cidata with the per-build user-data (throwaway key).
  cd_files = ["${local.seed_dir}/user-data", "${local.seed_dir}/meta-data"]
  cd_label = "cidata"

  # User-mode network with restrict=on: the VM reaches nothing, neither the host nor
  # the outside; only the SSH port forward on 127.0.0.1 works. Giving -netdev/-device
  # here replaces Packer's own (never pass -drive: it would replace Packer's disk).
  qemuargs = [
    ["-netdev", "user,id=user.0,restrict=on,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-device", "virtio-net,netdev=user.0"],
    ["-serial", "file:${local.serial_log}"],
  ]

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = local.ssh_private_key_file
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = local.shutdown_command
  shutdown_timeout     = "5m"
}

source "vsphere-clone" "node" {
  vcenter_server      = var.vsphere_server
  username            = var.vsphere_username
  password            = var.vsphere_password
  insecure_connection = var.vsphere_insecure_connection
  datacenter          = var.vsphere_datacenter
  cluster             = var.vsphere_cluster
  datastore           = var.vsphere_datastore
  folder              = var.vsphere_folder
  network             = var.vsphere_network
  template            = var.vsphere_template
  vm_name             = local.artifact_name
  convert_to_template = true

  # cloud-init's VMware datasource reads the same seed from guestinfo. The seed holds the
  # build's throwaway root key (disable_root: false) and a canary secret, and a template
  # keeps guestinfo: cloud-init overwrites the keys once read (cleanup-guestinfo in the
  # seed's meta-data) and seal.sh clears them with vmware-rpctool before shutdown, so
  # convert_to_template sees them empty. Packer 1.6.6 has no step to edit the VM's
  # configuration between shutdown and convert_to_template.
  configuration_parameters = {
    "guestinfo.userdata"          = base64encode(file("${local.seed_dir}/user-data"))
    "guestinfo.userdata.encoding" = "base64"
    "guestinfo.metadata"          = base64encode(file("${local.seed_dir}/meta-data"))
    "guestinfo.metadata.encoding" = "base64"
  }

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = local.ssh_private_key_file
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = local.shutdown_command
}

source "amazon-ebs" "node" {
  region                 = var.aws_region
  skip_region_validation = var.aws_skip_region_validation
  instance_type          = var.aws_instance_type
  ami_name               = local.artifact_name
  source_ami_filter {
    filters = {
      name                = var.aws_source_ami_name
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = var.aws_source_ami_owners
    most_recent = true
  }
  user_data_file = "${local.seed_dir}/user-data"
  tags = {
    Name    = local.artifact_name
    Base    = var.base
    Version = var.image_version
  }

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = local.ssh_private_key_file
  ssh_timeout          = var.ssh_timeout
}

source "openstack" "node" {
  cloud             = var.openstack_cloud
  image_name        = local.artifact_name
  source_image_name = var.openstack_source_image_name
  flavor            = var.openstack_flavor
  networks          = var.openstack_networks
  user_data_file    = "${local.seed_dir}/user-data"

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = local.ssh_private_key_file
  ssh_timeout          = var.ssh_timeout
}
