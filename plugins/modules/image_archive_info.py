#!/usr/bin/python
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_archive_info
short_description: Tell which images an image archive holds, without a container engine
version_added: 0.1.0
description:
  - Reads C(manifest.json) of an archive written by C(docker save) or C(podman save) (docker-archive
    format, optionally gzip, bzip2 or xz compressed) and returns each image's ID and tags, and the
    archive's compression.
  - The ID lets a play decide whether a host already has the image before copying a large archive to it.
  - A zstd-compressed archive is refused (Python's standard library reads no zstd before 3.14); read the
    uncompressed archive instead.
options:
  path:
    description:
      - Path of the archive.
    type: path
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Only reads.
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - u7s.cluster developers (@u7s)
"""

EXAMPLES = r"""
- name: Read the node image archive on the controller
  u7s.cluster.image_archive_info:
    path: /srv/u7s/node-v1.36.4.tar
  delegate_to: localhost
  run_once: true
  register: node_archive

- name: Show its image ID
  ansible.builtin.debug:
    msg: "{{ node_archive.images[0].id }}"
"""

RETURN = r"""
compression:
  description: How the archive file is compressed, from its first bytes; C(none), C(gzip), C(bzip2) or C(xz).
  returned: success
  type: str
  sample: none
images:
  description: The images in the archive, in manifest order.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: The image ID (digest of its config), with the C(sha256:) prefix.
      type: str
      sample: sha256:3f1c0e4ab0e35c1d6f1b5e8f5b2c4d6e8a0b2c4d6e8f0a2b4c6d8e0f2a4b6c8d
    repo_tags:
      description: The names the archive tags the image with.
      type: list
      elements: str
      sample: [localhost/u7s/node:v1.36.4]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.u7s.cluster.plugins.module_utils.image_archive import (
    ImageArchiveError,
    file_compression,
    read_manifest,
)


def main() -> None:
    module = AnsibleModule(argument_spec={"path": {"type": "path", "required": True}}, supports_check_mode=True)
    path = module.params["path"]
    try:
        images = read_manifest(path)
        compression = file_compression(path)
    except ImageArchiveError as exc:
        module.fail_json(msg="%s: %s" % (path, exc))
    module.exit_json(changed=False, images=images, compression=compression)


if __name__ == "__main__":
    main()
