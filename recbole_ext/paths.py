"""Where the package's data folders live, in a source checkout and in an installed copy.

In a checkout (``pip install -e .``) ``properties/`` and ``dataset_atomic/`` sit beside the
``recbole_ext`` package, as the design card fixes. A plain ``pip install .`` copies them into the
package as ``recbole_ext/_properties`` and ``recbole_ext/_dataset_atomic`` (see ``setup.py``).
"""

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CHECKOUT_ROOT = os.path.dirname(PACKAGE_DIR)


def _locate(top_level_name, installed_name):
    in_checkout = os.path.join(_CHECKOUT_ROOT, top_level_name)
    if os.path.isdir(in_checkout) and os.path.isfile(os.path.join(_CHECKOUT_ROOT, "setup.py")):
        return in_checkout
    return os.path.join(PACKAGE_DIR, installed_name)


PROPERTIES_DIR = _locate("properties", "_properties")
DATASET_ATOMIC_DIR = _locate("dataset_atomic", "_dataset_atomic")
# Raw public files are looked for here unless the ``raw_data_path`` config key says otherwise.
DATASET_RAW_DIR = os.path.join(os.path.dirname(DATASET_ATOMIC_DIR), "dataset_raw")


def model_yaml(model_name):
    return os.path.join(PROPERTIES_DIR, "model", f"{model_name}.yaml")


def dataset_yaml(dataset_name):
    return os.path.join(PROPERTIES_DIR, "dataset", f"{dataset_name}.yaml")


def hyper_file(model_name):
    return os.path.join(PROPERTIES_DIR, "hyper", f"{model_name}.hyper")
