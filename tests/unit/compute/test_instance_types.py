"""The instance-type catalog: the shipped types, a user file that adds and overrides types,
and the errors a bad file or an unknown name gives."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from stratus.compute.instance_types import InstanceCatalog, InstanceType
from stratus.core.errors import InvalidInput

SHIPPED = {
    "cpu.nano": (0.5, 0.5, 0),
    "cpu.small": (1, 2, 0),
    "cpu.medium": (2, 4, 0),
    "cpu.large": (4, 16, 0),
    "cpu.xlarge": (8, 32, 0),
    "mem.large": (2, 16, 0),
    "gpu.small": (4, 16, 1),
}


def test_the_shipped_types_load_from_package_data() -> None:
    text = importlib.resources.files("stratus.compute").joinpath("instance_types.yaml")
    assert "instance_types:" in text.read_text()
    catalog = InstanceCatalog.load()
    assert {t.name: (t.vcpus, t.memory_gib, t.gpus) for t in catalog.list()} == SHIPPED
    for t in catalog.list():
        assert 0 < t.spot_price_per_hour <= 0.45 * t.price_per_hour
    nano = catalog.get("cpu.nano")
    assert nano.memory_bytes == 512 * 2**20
    names = [t.name for t in catalog.list()]
    assert names[0] == "cpu.nano" and names[-1] == "gpu.small"  # by GPUs, vCPUs, memory
    assert names.index("mem.large") > names.index("cpu.medium")  # same vCPUs, more memory


def test_an_extra_file_adds_and_overrides_by_name(tmp_path: Path) -> None:
    extra = tmp_path / "types.yaml"
    extra.write_text(
        "instance_types:\n"
        "  - {name: cpu.small, vcpus: 1, memory_gib: 3, price_per_hour: 0.05,"
        " spot_price_per_hour: 0.02}\n"
        "  - {name: lab.box, vcpus: 12, memory_gib: 64, gpus: 2, price_per_hour: 0,"
        " spot_price_per_hour: 0, description: the lab's workstation}\n"
    )
    catalog = InstanceCatalog.load(extra)
    assert catalog.get("cpu.small").memory_gib == 3
    assert catalog.get("lab.box").description == "the lab's workstation"
    assert catalog.get("cpu.large").vcpus == 4  # shipped types stay
    assert len(catalog.list()) == len(SHIPPED) + 1


def test_a_missing_or_empty_extra_file_is_fine(tmp_path: Path) -> None:
    assert len(InstanceCatalog.load(tmp_path / "nope.yaml").list()) == len(SHIPPED)
    (tmp_path / "empty.yaml").write_text("")
    assert len(InstanceCatalog.load(tmp_path / "empty.yaml").list()) == len(SHIPPED)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("instance_types: [{name: x, vcpus: 1}]", "memory_gib"),
        ("instance_types: [{name: x, vcpus: 0, memory_gib: 1, price_per_hour: 1,"
         " spot_price_per_hour: 0.5}]", "vcpus"),
        ("instance_types: [{name: x, vcpus: 1, memory_gib: 1, price_per_hour: 1,"
         " spot_price_per_hour: 2}]", "spot_price_per_hour"),
        ("instance_types: [{name: x, vcpus: 1, memory_gib: 1, price_per_hour: 1,"
         " spot_price_per_hour: 0.5, colour: red}]", "colour"),
        ("instance_types: [{name: x, vcpus: 1, memory_gib: 1, price_per_hour: 1,"
         " spot_price_per_hour: 0.5}, {name: x, vcpus: 2, memory_gib: 1, price_per_hour: 1,"
         " spot_price_per_hour: 0.5}]", "twice"),
        ("types: []", "types"),
        ("- just a list", "mapping"),
        ("instance_types: [unclosed", "YAML"),
    ],
)  # fmt: skip
def test_a_malformed_extra_file_names_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    extra = tmp_path / "bad-types.yaml"
    extra.write_text(content)
    with pytest.raises(InvalidInput) as caught:
        InstanceCatalog.load(extra)
    assert str(extra) in caught.value.detail and problem in caught.value.detail


def test_an_unreadable_extra_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        InstanceCatalog.load(tmp_path)  # a folder


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        InstanceCatalog.load().get("cpu.huge")
    assert caught.value.detail.startswith("unknown instance type 'cpu.huge'; known: cpu.nano, ")
    assert "gpu.small" in caught.value.detail


def test_the_model_refuses_bad_values() -> None:
    good = dict(name="t", vcpus=1, memory_gib=1, price_per_hour=1, spot_price_per_hour=0.3)
    assert InstanceType.model_validate(good).gpus == 0
    for bad in ({"gpus": -1}, {"price_per_hour": -1}, {"name": "../x"}, {"memory_gib": 0}):
        with pytest.raises(ValidationError):
            InstanceType.model_validate({**good, **bad})
