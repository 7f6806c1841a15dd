# Every input of the image build. Values per base live in bases/<base>.pkrvars.hcl;
# `null` means "derive the default" in locals below. Paths are anchored at path.root
# (this directory), outputs go under the git-ignored build/ folder of the repository.

variable "base" {
  type        = string
  default     = "debian-12"
  description = "Which base image the node image starts from; names the image and picks the package format."
  validation {
    condition     = contains(["debian-12", "rocky-9", "alma-9"], var.base)
    error_message = "The base must be one of: debian-12, rocky-9, alma-9."
  }
}

variable "base_image_url" {
  type        = string
  default     = null
  description = "qemu: the base qcow2 (local path or URL). null means build/base/<base>.qcow2 made by `image.build_base`."
}

variable "base_image_checksum" {
  type        = string
  default     = null
  description = "qemu: checksum of base_image_url, as Packer takes it (sha256:<hex>, or file:<path or URL of a SHA256SUMS file>). null means build/base/<base>.qcow2.SHA256SUMS."
}

variable "image_name" {
  type        = string
  default     = "ha-ingress-proxy"
  description = "Name prefix of the artifact (qcow2 file, vSphere template, AMI, Glance image)."
}

variable "image_version" {
  type        = string
  default     = "0.0.0-dev"
  description = "Version recorded in the image name and in the image manifest."
}

variable "package_dir" {
  type        = string
  default     = null
  description = "Local directory holding the project's package: ha-ingress-proxy_*.deb for Debian, *.rpm (optionally with repodata/) for EL. null means build/packages."
}

variable "seed_dir" {
  type        = string
  default     = null
  description = "Directory with the per-build cloud-init user-data and meta-data that authorise the throwaway SSH key. null means build/bake/seed."
}

variable "ssh_private_key_file" {
  type        = string
  default     = null
  description = "Throwaway private key made per build; its public half is in seed_dir/user-data. null means build/bake/id_ed25519."
}

variable "ssh_username" {
  type        = string
  default     = "root"
  description = "User the build logs in as (the seed authorises the key for it); its key is removed when sealing."
}

variable "ssh_timeout" {
  type        = string
  default     = "20m"
  description = "How long to wait for SSH on the booting VM (tcg is slow)."
}

variable "output_dir" {
  type        = string
  default     = null
  description = "Where local artifacts go. null means build/image. The qemu output directory under it must not exist yet."
}

variable "accelerator" {
  type        = string
  default     = "tcg"
  description = "qemu accelerator. Packer picks kvm whenever /dev/kvm opens, even where it hangs, so this is always set; `image.detect_accelerator()` probes for a working one."
  validation {
    condition     = contains(["kvm", "tcg", "hvf", "whpx", "xen", "hax", "none"], var.accelerator)
    error_message = "The accelerator must be one of: kvm, tcg, hvf, whpx, xen, hax, none."
  }
}

variable "cpus" {
  type        = number
  default     = 2
  description = "vCPUs of the build VM."
}

variable "memory" {
  type        = number
  default     = 1536
  description = "Memory of the build VM in MiB."
}

variable "disk_size" {
  type        = string
  default     = "4G"
  description = "qemu: virtual size of the image disk (grown from the base; cloud-init grows the root partition)."
}

variable "headless" {
  type        = bool
  default     = true
  description = "qemu: no display window."
}

variable "serial_log" {
  type        = string
  default     = null
  description = "qemu: file that receives the build VM's serial console. null means build/image/<base>-serial.log."
}

variable "enable_units" {
  type        = list(string)
  default     = ["haproxy.service", "keepalived.service", "ha-ingress-proxy-agent.service", "ha-ingress-proxy-metrics.service"]
  description = "Units `systemctl preset` enables in the image; the build fails if one is missing."
}

variable "manifest_paths" {
  type = list(string)
  default = [
    "/etc/ha-ingress-proxy",
    "/usr/lib/ha-ingress-proxy/python",
    "/etc/frr/hip/daemons",
    "/etc/frr/hip/vtysh.conf",
    "/usr/lib/systemd/system/frr.service.d/ha-ingress-proxy.conf",
    "/usr/lib/systemd/system/ha-ingress-proxy-bgp-gate.service",
    "/usr/libexec/keepalived/ha-ingress-proxy-check-haproxy",
    "/usr/libexec/keepalived/ha-ingress-proxy-backup-grace",
    "/usr/lib/systemd/system/haproxy.service.d/ha-ingress-proxy.conf",
    "/usr/lib/systemd/system/keepalived.service.d/ha-ingress-proxy.conf",
    "/usr/lib/systemd/system/ha-ingress-proxy-firewall.service",
    "/usr/lib/sysusers.d/ha-ingress-proxy.conf",
    "/usr/lib/systemd/system/ha-ingress-proxy-agent.service",
    "/usr/lib/systemd/system/ha-ingress-proxy-metrics.service",
    "/usr/lib/systemd/system/ha-ingress-proxy-haproxy-watch.service",
    "/usr/lib/systemd/system-preset/50-ha-ingress-proxy.preset",
    "/usr/lib/sysctl.d/60-ha-ingress-proxy.conf",
    "/etc/rsyslog.d/49-ha-ingress-proxy.conf",
    "/etc/logrotate.d/ha-ingress-proxy",
    "/usr/share/ha-ingress-proxy/site.json",
    "/usr/bin/ha-ingress-proxy",
  ]
  description = "Files and directories the package installs (ha_ingress_proxy.layout.manifest_paths(); a test keeps this list equal to it); the image manifest records a sha256 over them. Missing paths are recorded as missing."
}

# --- vSphere (vsphere-clone from a template made from the base; the seed's hosts are VMware)

variable "vsphere_server" {
  type        = string
  default     = ""
  description = "vCenter host name."
}

variable "vsphere_username" {
  type        = string
  default     = ""
  description = "vCenter user."
}

variable "vsphere_password" {
  type        = string
  default     = ""
  sensitive   = true
  description = "vCenter password (pass it with PKR_VAR_vsphere_password, never in a file in git)."
}

variable "vsphere_insecure_connection" {
  type        = bool
  default     = false
  description = "Skip TLS verification of vCenter."
}

variable "vsphere_datacenter" {
  type        = string
  default     = ""
  description = "vSphere datacenter."
}

variable "vsphere_cluster" {
  type        = string
  default     = ""
  description = "vSphere cluster the build VM runs in."
}

variable "vsphere_datastore" {
  type        = string
  default     = ""
  description = "Datastore for the build VM and the template."
}

variable "vsphere_folder" {
  type        = string
  default     = ""
  description = "VM folder for the template."
}

variable "vsphere_network" {
  type        = string
  default     = ""
  description = "Port group of the build VM's NIC."
}

variable "vsphere_template" {
  type        = string
  default     = ""
  description = "Template to clone: the base image imported into vSphere (for example the qcow2 from image.build_base, converted to VMDK)."
}

# --- AWS

variable "aws_region" {
  type        = string
  default     = "eu-central-1"
  description = "AWS region to build in."
}

variable "aws_instance_type" {
  type        = string
  default     = "t3.small"
  description = "Instance type of the build instance."
}

variable "aws_source_ami_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "Name filter of the source AMI (most recent wins)."
}

variable "aws_source_ami_owners" {
  type        = list(string)
  default     = ["136693071363"]
  description = "Owners of the source AMI (136693071363 is Debian's)."
}

variable "aws_skip_region_validation" {
  type        = bool
  default     = false
  description = "Do not ask AWS whether aws_region exists (validation without credentials or network)."
}

# --- OpenStack

variable "openstack_cloud" {
  type        = string
  default     = ""
  description = "Entry of clouds.yaml to use; empty means the OS_* environment."
}

variable "openstack_source_image_name" {
  type        = string
  default     = "debian-12-genericcloud-amd64"
  description = "Glance image the build starts from."
}

variable "openstack_flavor" {
  type        = string
  default     = "m1.small"
  description = "Flavor of the build server."
}

variable "openstack_networks" {
  type        = list(string)
  default     = []
  description = "Network UUIDs the build server attaches to."
}

locals {
  repo_root            = "${path.root}/.."
  package_dir          = var.package_dir != null ? var.package_dir : "${local.repo_root}/build/packages"
  seed_dir             = var.seed_dir != null ? var.seed_dir : "${local.repo_root}/build/bake/seed"
  ssh_private_key_file = var.ssh_private_key_file != null ? var.ssh_private_key_file : "${local.repo_root}/build/bake/id_ed25519"
  output_dir           = var.output_dir != null ? var.output_dir : "${local.repo_root}/build/image"
  base_image_url       = var.base_image_url != null ? var.base_image_url : "${local.repo_root}/build/base/${var.base}.qcow2"
  base_image_checksum  = var.base_image_checksum != null ? var.base_image_checksum : "file:${local.repo_root}/build/base/${var.base}.qcow2.SHA256SUMS"
  serial_log           = var.serial_log != null ? var.serial_log : "${local.output_dir}/${var.base}-serial.log"
  artifact_name        = "${var.image_name}-${var.base}-${var.image_version}"
  # Run provisioning as root whatever user logs in.
  # Last command of a build; a non-root build user loses its sudo rule here.
  shutdown_command = var.ssh_username == "root" ? "shutdown -P now" : "sudo -n sh -c 'rm -f /etc/sudoers.d/90-cloud-init-users; shutdown -P now'"
  execute_command  = var.ssh_username == "root" ? "chmod +x {{ .Path }}; {{ .Vars }} {{ .Path }}" : "chmod +x {{ .Path }}; sudo -n env {{ .Vars }} {{ .Path }}"
}
