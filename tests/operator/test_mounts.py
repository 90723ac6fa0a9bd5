"""The rendered pods, laid out on disk as the kubelet would mount them, start the real service code.

The render tests check paths; this checks that the paths meet: the ConfigMap lands where `--config` points,
each Secret key where `--secrets-dir` makes the service look, and the loaded configuration holds the
values of the mounted Secrets (the scanner's too, with its mailbox password; the service's without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from bounce_operator.refs import all_refs
from bounce_operator.render import Owner, render_children
from bounce_service.cli import build_parser
from bounce_service.config import ConfigError, load_config
from bounce_service.mailbox.settings import MailboxSettings
from bounce_service.schema import validate_spec
from bounce_service.secrets import SecretSource

from .pods import pod_specs

ROOT = Path(__file__).resolve().parents[2]
OWNER = Owner("newsletters", "mail", "0b5e7c3a-0000-4000-8000-000000000001")


def secret_value(name: str, key: str) -> str:
    if (name, key) == ("bounce-db", "url"):
        return f"postgresql://bounce@db.example/{name}-{key}"  # the loader checks that libpq can read it
    return f"value of {name}/{key}"


def mount(pod: dict[str, Any], config_maps: dict[str, dict[str, str]], root: Path) -> dict[str, Path]:
    """Write the pod's volumes under `root` as the kubelet mounts them; mount path → where it is on disk."""
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (container,) = pod["containers"]
    mounted = {}
    for index, volume_mount in enumerate(container["volumeMounts"]):
        target = root / str(index)
        volume = volumes[volume_mount["name"]]
        files: dict[str, str] = {}
        if "configMap" in volume:
            files = config_maps[volume["configMap"]["name"]]
        elif "projected" in volume:
            files = {item["path"]: secret_value(source["secret"]["name"], item["key"])
                     for source in volume["projected"]["sources"] for item in source["secret"]["items"]}
        else:
            assert volume == {"name": volume["name"], "emptyDir": {}}
        target.mkdir(parents=True)
        for relative, text in files.items():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_text(text)
        mounted[volume_mount["mountPath"]] = target
    return mounted


def on_disk(path: str, mounted: dict[str, Path]) -> Path:
    """Where a path inside the container is, through the mount that holds it."""
    (mount_path,) = [m for m in mounted if path == m or path.startswith(m.rstrip("/") + "/")]
    return mounted[mount_path] / Path(path).relative_to(mount_path)


@pytest.fixture
def children() -> list[dict[str, Any]]:
    spec, violations = validate_spec(yaml.safe_load((ROOT / "examples/bounceconfig-full.yaml").read_text())["spec"])
    assert not violations
    return render_children(OWNER, spec, {key: "fingerprint" for key in all_refs(spec)}, frozenset())


def start(child: dict[str, Any], children: list[dict[str, Any]], root: Path) -> tuple[Any, Any]:
    """Parse the container's command as `bounce-service` does and load the config it names, from the mounts."""
    config_maps = {c["metadata"]["name"]: c["data"] for c in children if c["kind"] == "ConfigMap"}
    (pod,) = pod_specs(child)
    mounted = mount(pod, config_maps, root)
    (container,) = pod["containers"]
    assert container["command"][0] == "bounce-service"
    args = build_parser().parse_args(container["command"][1:])
    secrets = SecretSource(directory=on_disk(args.secrets_dir, mounted), environ={})
    return args, load_config(on_disk(args.config, mounted), secrets=secrets, environ={})


def test_the_service_starts_from_its_mounts(children: list[dict[str, Any]], tmp_path: Path) -> None:
    (deployment,) = [c for c in children if c["kind"] == "Deployment"]
    args, config = start(deployment, children, tmp_path)
    assert args.command == "serve"
    assert config.database_url.reveal() == secret_value("bounce-db", "url")
    assert config.users["mailer"].token.reveal() == secret_value("bounce-api", "mailer")
    assert config.webhooks["mailgun"]["secret"].reveal() == secret_value("bounce-providers", "mailgun-signing-key")
    with pytest.raises(ConfigError, match="bounce-mailboxes/pop3 not found"):  # never given a mailbox password
        MailboxSettings.from_config(config, "returns")


@pytest.mark.parametrize("mailbox, key", [("returns", "pop3"), ("feedback-loop", "imap")])
def test_each_scanner_starts_from_its_mounts(children: list[dict[str, Any]], mailbox: str, key: str,
                                             tmp_path: Path) -> None:
    (cronjob,) = [c for c in children if c["kind"] == "CronJob" and c["metadata"]["name"] == f"newsletters-{mailbox}"]
    args, config = start(cronjob, children, tmp_path)
    assert (args.command, args.mailbox) == ("scan", mailbox)
    assert config.database_url.reveal() == secret_value("bounce-db", "url")
    settings = MailboxSettings.from_config(config, mailbox)
    assert settings.password.reveal() == secret_value("bounce-mailboxes", key)
    other = {"returns": "feedback-loop", "feedback-loop": "returns"}[mailbox]
    with pytest.raises(ConfigError, match="not found"):  # another mailbox's password is not mounted here
        MailboxSettings.from_config(config, other)
