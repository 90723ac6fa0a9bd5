"""What the reconciler compares and patches: server defaults are no drift, and what it stops wanting goes."""

from __future__ import annotations

import json

from bounce_operator.merge import FIELDS_ANNOTATION, fields_of, is_subset, merge_patch, stamped, written_fields


def test_is_subset_accepts_server_defaults_and_catches_edits() -> None:
    desired = {"spec": {"replicas": 2, "ports": [{"port": 80}]}}
    assert is_subset(desired, {"spec": {"replicas": 2, "ports": [{"port": 80, "protocol": "TCP"}]}, "status": {}})
    assert not is_subset(desired, {"spec": {"replicas": 3, "ports": [{"port": 80}]}})
    assert not is_subset(desired, {"spec": {"replicas": 2, "ports": [{"port": 80}, {"port": 81}]}})
    assert not is_subset(desired, {"spec": {"replicas": 2}})


INGRESS = {"metadata": {"name": "mail", "annotations": {"example.com/a": "1"}},
           "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["h"], "secretName": "s"}], "rules": []}}


def test_a_stamped_child_records_its_own_shape() -> None:
    child = stamped(INGRESS)
    assert child["metadata"]["annotations"]["example.com/a"] == "1"
    assert written_fields(child) == fields_of(INGRESS) == {
        "metadata": {"name": 1, "annotations": {"example.com/a": 1}},
        "spec": {"ingressClassName": 1, "tls": [{"hosts": [1], "secretName": 1}], "rules": []}}
    assert json.loads(child["metadata"]["annotations"][FIELDS_ANNOTATION]) == fields_of(INGRESS)


def test_the_patch_removes_what_is_no_longer_wanted_and_nothing_else() -> None:
    wanted = {"metadata": {"name": "mail"}, "spec": {"rules": []}}
    assert merge_patch(wanted, fields_of(INGRESS)) == {
        "metadata": {"name": "mail", "annotations": None}, "spec": {"rules": [], "ingressClassName": None, "tls": None}}
    assert merge_patch(INGRESS, fields_of(INGRESS)) == INGRESS  # nothing went: the patch is the manifest


def test_a_shape_change_inside_a_list_is_a_difference() -> None:
    """A merge patch replaces lists whole, so a key gone from a container must cause a write."""
    before = stamped({"metadata": {}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}})
    after = stamped({"metadata": {}, "spec": {"containers": [{"name": "c", "resources": {}}]}})
    assert is_subset({"metadata": {}, "spec": {"containers": [{"name": "c", "resources": {}}]}}, before)
    assert not is_subset(after, before)


def test_a_missing_or_mangled_record_removes_nothing() -> None:
    assert written_fields({"metadata": {}}) == {}
    assert written_fields({"metadata": {"annotations": {FIELDS_ANNOTATION: "{not json"}}}) == {}
    assert written_fields({"metadata": {"annotations": {FIELDS_ANNOTATION: "[1]"}}}) == {}
