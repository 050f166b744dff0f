# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters of the fleet registry (docs in <filter name>.yml beside this one)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.fleet_registry import (
    ImageNameError,
    archive_images,
    fleet_path as path_of,
    load_plan,
    manifest_config_digest,
    offline_images,
)


def fleet_path(ref: t.Any) -> str:
    """REF's repository path and tag under the fleet registry."""
    try:
        return path_of(str(ref))
    except ImageNameError as exc:
        raise AnsibleFilterError("fleet_path: %s" % exc) from None


def fleet_offline_images(manifest: t.Any, directory: str) -> list[dict[str, str]]:
    """The images of artifacts/images.sh's manifest.json in DIRECTORY (the node base left out)."""
    try:
        return offline_images(manifest, str(directory))
    except ValueError as exc:
        raise AnsibleFilterError("fleet_offline_images: %s" % exc) from None


def fleet_archive_images(results: t.Any) -> list[dict[str, str]]:
    """{ref, file, id} for every name in the archives of image_archive_info's loop RESULTS."""
    try:
        return archive_images(results)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("fleet_archive_images: %s" % exc) from None


def fleet_load_plan(images: t.Any, answers: t.Any) -> list[dict[str, t.Any]]:
    """The uploads registry-load.yml makes: IMAGES whose path the registry does not hold with their ID.

    ANSWERS are the registry's answers (uri results, each with item.path and json) to a manifest request.
    """
    pushed = {}
    for answer in answers or []:
        pushed[answer["item"]["path"]] = manifest_config_digest(answer.get("json")) if answer.get("status") == 200 else None
    try:
        return load_plan(images, pushed)
    except (ImageNameError, KeyError, TypeError) as exc:
        raise AnsibleFilterError("fleet_load_plan: %s" % exc) from None


class FilterModule:
    """u7s.cluster fleet registry filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {"fleet_path": fleet_path, "fleet_offline_images": fleet_offline_images,
                "fleet_load_plan": fleet_load_plan, "fleet_archive_images": fleet_archive_images}
