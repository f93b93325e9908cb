"""A plain `pip install .` ships properties/ and the synthetic sample inside the package, and the
package finds them there when no checkout is around."""

import subprocess
import sys
import zipfile

from conftest import REPO_ROOT
from recbole_ext import paths


def test_wheel_contains_properties_sample_and_cli(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), REPO_ROOT],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("recbole_ext-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "recbole_ext/_properties/overall.yaml",
        "recbole_ext/_properties/dataset/synthetic.yaml",
        "recbole_ext/_properties/model/QuerySeqRec.yaml",
        "recbole_ext/_dataset_atomic/synthetic/synthetic.inter",
        "recbole_ext/_dataset_atomic/synthetic/synthetic.query",
        "recbole_ext/registry.py",
        "run_recbole_ext.py",
    ):
        assert expected in names, expected
    assert not any(n.startswith("tests/") for n in names)


def test_installed_layout_is_found_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "_CHECKOUT_ROOT", str(tmp_path))  # no setup.py, no properties/ there
    assert paths._locate("properties", "_properties") == f"{paths.PACKAGE_DIR}/_properties"
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "properties").mkdir()
    assert paths._locate("properties", "_properties") == str(tmp_path / "properties")
