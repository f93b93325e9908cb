"""recbole-ext: five published sequential recommenders as RecBole plugins.

Exact, tested versions live in constraints.txt (install with ``-c constraints.txt``); the ranges
below are what the code supports.
"""

import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def data_files_under(folder):
    """Every file below ``folder``, relative to it (package_data wants explicit patterns)."""
    found = []
    for root, _, files in os.walk(os.path.join(HERE, folder)):
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), os.path.join(HERE, folder)))
    return found


PACKAGES = [
    "recbole_ext",
    "recbole_ext.data",
    "recbole_ext.data.dataset",
    "recbole_ext.data.dataloader",
    "recbole_ext.data.convert",
    "recbole_ext.model",
    "recbole_ext.model.sequential_recommender",
]

setup(
    name="recbole-ext",
    version="0.1.0",
    description="QuerySeqRec, HUGT, EMBSR, MA-GNN and DGSR as RecBole plugins",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    # properties/ and dataset_atomic/ stay at the top level of the checkout (design card); a
    # plain `pip install .` ships them inside the package (recbole_ext/paths.py finds either).
    packages=PACKAGES + ["recbole_ext._properties", "recbole_ext._dataset_atomic"],
    package_dir={"recbole_ext._properties": "properties", "recbole_ext._dataset_atomic": "dataset_atomic"},
    package_data={
        "recbole_ext._properties": data_files_under("properties"),
        # only the shipped sample; converted datasets also land in dataset_atomic/ but stay local
        "recbole_ext._dataset_atomic": ["synthetic/" + f for f in data_files_under("dataset_atomic/synthetic")],
    },
    py_modules=["run_recbole_ext", "run_hyper_ext"],
    install_requires=[
        "recbole==1.2.1",
        "torch>=2.1,<2.14",
        "numpy>=1.24,<2",
        "pandas>=2.0,<3",
        "scipy>=1.10",
        "pyyaml>=6",
        "setuptools<81",  # ray 2.6.3 (imported by RecBole) needs pkg_resources at run time
        "matplotlib>=3.7",  # the comparison's bar chart
    ],
    extras_require={
        "hyperopt": ["hyperopt==0.2.5"],
        "test": ["pytest>=8", "hyperopt==0.2.5"],
    },
    entry_points={
        "console_scripts": ["recbole-ext=recbole_ext.cli:main", "recbole-ext-hyper=recbole_ext.tuning:main"]
    },
)
