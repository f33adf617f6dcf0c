# The runner AMI for runnerscale's ec2 backend: Ubuntu 24.04 LTS (Canonical's own image), the
# official GitHub Actions runner, Docker, the AWS CLI, the user `runner`, and the boot script
# (boot.sh) with its unit, which at an instance's first boot reads the runner's one-job JIT
# configuration from SSM and starts the runner. See docs/backends/ec2.md.
#
#   packer init images/ec2
#   packer build -var runner_sha256=<sha256 of actions-runner-linux-x64-2.328.0.tar.gz> images/ec2
#
# The build runs in your AWS account (the default credential chain, var.region): a temporary
# instance, security group and key pair, removed when the AMI is made.

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "Where the AMI is built and registered (copy it to other regions with ami_regions)."
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "More regions to copy the AMI to."
}

variable "architecture" {
  type        = string
  default     = "x86_64"
  description = "x86_64 (runner label x64) or arm64 (Graviton instance types)."
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "The architecture is x86_64 or arm64."
  }
}

variable "instance_type" {
  type        = string
  default     = ""
  description = "The build instance's type (default: m7i.large, or m7g.large for arm64)."
}

variable "runner_version" {
  type        = string
  default     = "2.328.0"
  description = "The actions/runner release (https://github.com/actions/runner/releases). GitHub stops serving jobs to runners that are too old: rebuild when a new release comes out."
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.runner_version))
    error_message = "The runner version is a release number like 2.328.0, without the v."
  }
}

variable "runner_sha256" {
  type        = string
  description = "The SHA-256 of actions-runner-linux-<x64|arm64>-<runner_version>.tar.gz, as the release notes list it: the download is checked against it."
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.runner_sha256))
    error_message = "The runner_sha256 is 64 lower-case hex digits (the release notes list one per tarball)."
  }
}

variable "runner_sudo" {
  type        = bool
  default     = true
  description = "Let jobs use sudo without a password, as on GitHub's hosted runners (the instance serves one job and is gone)."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "The subnet of the build instance (default: the default VPC's)."
}

variable "volume_size" {
  type        = number
  default     = 30
  description = "The root volume in GiB (instances may ask for more in the launch template)."
}

locals {
  runner_arch   = var.architecture == "arm64" ? "arm64" : "x64"
  ubuntu_arch   = var.architecture == "arm64" ? "arm64" : "amd64"
  instance_type = var.instance_type != "" ? var.instance_type : (var.architecture == "arm64" ? "m7g.large" : "m7i.large")
  stamp         = formatdate("YYYYMMDD-hhmmss", timestamp())
}

source "amazon-ebs" "runner" {
  region        = var.region
  ami_regions   = var.ami_regions
  instance_type = local.instance_type
  subnet_id     = var.subnet_id != "" ? var.subnet_id : null
  ssh_username  = "ubuntu"

  ami_name        = "runnerscale-runner-${var.runner_version}-${local.runner_arch}-${local.stamp}"
  ami_description = "runnerscale runner: Ubuntu 24.04, actions/runner ${var.runner_version}, Docker, runnerscale-boot"
  # Instances from this AMI require IMDSv2 (session tokens), as the boot script uses it.
  imds_support = "v2.0"

  # Ubuntu 24.04 LTS (noble), the newest image Canonical (owner 099720109477) published.
  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-${local.ubuntu_arch}-server-*"
      architecture        = var.architecture
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["099720109477"]
    most_recent = true
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.volume_size
    volume_type           = "gp3"
    delete_on_termination = true
  }

  tags = {
    Name                         = "runnerscale-runner-${var.runner_version}-${local.runner_arch}"
    "runnerscale:image"          = "runner"
    "runnerscale:runner-version" = var.runner_version
    "runnerscale:base-ami"       = "{{ .SourceAMI }}"
  }
}

build {
  sources = ["source.amazon-ebs.runner"]

  provisioner "file" {
    source      = "${path.root}/boot.sh"
    destination = "/tmp/runnerscale-boot"
  }

  provisioner "file" {
    source      = "${path.root}/runnerscale-boot.service"
    destination = "/tmp/runnerscale-boot.service"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "RUNNER_VERSION=${var.runner_version}",
      "RUNNER_SHA256=${var.runner_sha256}",
      "RUNNER_ARCH=${local.runner_arch}",
      "RUNNER_SUDO=${var.runner_sudo}",
    ]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
  }
}
