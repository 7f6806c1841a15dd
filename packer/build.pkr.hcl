# One build for every source; `-only` needs the build name prefix with Packer 1.6.6,
# for example: packer build -only 'ha-ingress-proxy.qemu.node' ...

build {
  name = "ha-ingress-proxy"
  sources = [
    "source.qemu.node",
    "source.vsphere-clone.node",
    "source.amazon-ebs.node",
    "source.openstack.node",
  ]

  # (a) the project's package, from the local directory given as package_dir
  provisioner "shell" {
    inline          = ["mkdir -p /tmp/ha-ingress-proxy-pkgs"]
    execute_command = local.execute_command
  }
  provisioner "file" {
    source      = "${local.package_dir}/"
    destination = "/tmp/ha-ingress-proxy-pkgs"
  }
  provisioner "shell" {
    script           = "${path.root}/../image/provision/install-package.sh"
    environment_vars = ["PACKAGE_DIR=/tmp/ha-ingress-proxy-pkgs"]
    execute_command  = local.execute_command
  }

  # (b) units enabled through their presets
  provisioner "shell" {
    script           = "${path.root}/../image/provision/enable-units.sh"
    environment_vars = ["UNITS=${join(" ", var.enable_units)}"]
    execute_command  = local.execute_command
  }

  # (d) what is in the image, and a digest over the package's files
  provisioner "shell" {
    script = "${path.root}/../image/provision/write-manifest.sh"
    environment_vars = [
      "MANIFEST_PATHS=${join(" ", var.manifest_paths)}",
      "IMAGE_NAME=${local.artifact_name}",
      "IMAGE_VERSION=${var.image_version}",
      "IMAGE_BASE=${var.base}",
    ]
    execute_command = local.execute_command
  }

  # (c) last: nothing instance-specific, no build credentials left
  provisioner "shell" {
    script           = "${path.root}/../image/provision/seal.sh"
    environment_vars = ["BUILD_USER=${var.ssh_username}"]
    execute_command  = local.execute_command
  }

  post-processor "manifest" {
    output     = "${local.output_dir}/packer-manifest.json"
    strip_path = false
  }
}
