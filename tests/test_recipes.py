"""Recipes (properties/recipe/<paper>-<dataset>.yaml): every recipe runs end to end on its
converter's fixture (tests/fixtures/raw/), with tiny dimensions overriding the recipe's, so none rots.

The hand-written fixtures hold two or three users; each converted dataset is tiled into disjoint
copies (user, item and time shifted; the format is the converter's own) so that every protocol has
training, validation and test examples.
"""

import os
import re
import shutil

import pandas as pd
import pytest
import yaml
from conftest import REPO_ROOT

from recbole_ext import paths
from recbole_ext.config import Config
from recbole_ext.data.convert import build_parser, convert, get_source

RECIPE_DIR = os.path.join(paths.PROPERTIES_DIR, "recipe")
RECIPES = sorted(name[:-5] for name in os.listdir(RECIPE_DIR) if name.endswith(".yaml"))
RAW = os.path.join(REPO_ROOT, "tests", "fixtures", "raw")
# sources without a fixture of their own: another source's fixture under the expected file name
BORROWED = {
    "amazon-books": ("amazon-cds", {"reviews_CDs_and_Vinyl_5.json": "reviews_Books_5.json"}),
    "goodreads-comics": ("goodreads-children",
                         {"goodreads_interactions_children.json": "goodreads_interactions_comics.json"}),
}
# the fixtures are far below any paper's k-core: count filters go to 1, the other flags stay
RELAXED = {"--user-core": "1", "--item-core": "1", "--min-item-count": "1"}
COPIES = 12
TINY = {
    "epochs": 1, "eval_step": 1, "hidden_size": 8, "embedding_size": 8, "inner_size": 16, "n_layers": 1,
    "n_heads": 2, "n_graph_heads": 1, "MAX_ITEM_LIST_LENGTH": 10, "MAX_EVENT_LIST_LENGTH": 10,
    "train_batch_size": 16, "eval_batch_size": 512, "attention_dimensions": 2, "memory_slots": 2,
    "svd_rank": 2, "dgsr_negatives": 5, "show_progress": False, "state": "ERROR", "use_gpu": False,
}


def read_recipe(name):
    with open(os.path.join(RECIPE_DIR, f"{name}.yaml"), encoding="utf-8") as f:
        text = f.read()
    documented = dict(re.findall(r"--(model|dataset|recipe)=(\S+)", text))
    return yaml.safe_load(text), documented


def relaxed(source, argv):
    """The recipe's flags, then every count filter the converter has set to 1 (the last flag wins)."""
    known = build_parser(source)._option_string_actions
    return list(argv) + [part for flag, value in RELAXED.items() if flag in known for part in (flag, value)]


def tile(folder, name, user_field, item_field):
    """Disjoint copies of every user (two copies per user, one after the other in time) and item."""
    for suffix in (".inter", ".query"):
        path = os.path.join(folder, name + suffix)
        if not os.path.isfile(path):
            continue
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        copies = []
        for k in range(COPIES):
            copy = frame.copy()
            for column in copy.columns:
                field = column.split(":")[0]
                if field == user_field:
                    copy[column] = copy[column] + f"~{k // 2}"
                elif field == item_field:
                    copy[column] = copy[column] + f"~{k}"
                elif column.endswith(":float") and field == "timestamp":
                    copy[column] = (copy[column].astype(float) + (k % 2) * 1e6).map(repr)
            copies.append(copy)
        pd.concat(copies).to_csv(path, sep="\t", index=False)
    for other in os.listdir(folder):  # side files (.item, .user) are not loaded by the recipes
        if not other.endswith((".inter", ".query")):
            os.remove(os.path.join(folder, other))


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Per dataset of a recipe: its converted, tiled fixture (converted once per session)."""
    root = tmp_path_factory.mktemp("recipes")
    cache = {}

    def get(name):
        recipe, documented = read_recipe(name)
        dataset = documented["dataset"]
        if dataset not in cache:
            source = recipe["convert_source"]
            fixture, renames = BORROWED.get(source, (source, {}))
            raw = root / "raw" / dataset
            shutil.copytree(os.path.join(RAW, fixture), raw)
            for old, new in renames.items():
                os.rename(raw / old, raw / new)
            out = root / "data" / dataset
            convert(source, str(raw), str(out), argv=relaxed(get_source(source), recipe["convert_args"]), out=lambda *_: None)
            config = Config(documented["model"], dataset, config_dict={"recipe": name, "data_path": str(root / "data")},
                            read_command_line=False)
            tile(str(out), dataset, config["USER_ID_FIELD"], config["ITEM_ID_FIELD"])
            cache[dataset] = str(root / "data")
        return cache[dataset]

    return get


def test_every_paper_has_its_recipes():
    papers = {name.split("-")[0] for name in RECIPES}
    assert papers == {"queryseqrec", "hugt", "embsr", "magnn", "dgsr"}
    assert len(RECIPES) == 18


# where the package default departs from the paper (chosen on validation on synthetic), a paper's
# recipe must set the paper's value, or it would not reproduce that paper
PAPER_VALUES = {
    "dgsr": {"user_id_embedding": True, "readout_last_item": "none"},
    "embsr": {"recent_interest": "last_micro"},
}


@pytest.mark.parametrize("name", [n for n in RECIPES if n.split("-")[0] in PAPER_VALUES])
def test_recipe_runs_the_papers_model_where_the_defaults_depart_from_it(name):
    documented = read_recipe(name)[1]
    config = Config(documented["model"], documented["dataset"], config_dict={"recipe": name},
                    read_command_line=False)
    for key, value in PAPER_VALUES[name.split("-")[0]].items():
        assert config[key] == value, (name, key)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_end_to_end_on_its_fixture(converted, name):
    from recbole_ext.quick_start import run_single

    recipe, documented = read_recipe(name)
    assert documented["recipe"] == name
    # the documented conversion parses (a renamed or removed converter flag fails here)
    source = get_source(recipe["convert_source"])
    build_parser(source).parse_args(["--input", "raw"] + list(recipe["convert_args"]))
    data_path = converted(name)
    config_dict = dict(TINY, recipe=name, data_path=data_path)
    config = Config(documented["model"], documented["dataset"], config_dict=config_dict, read_command_line=False)
    for key, value in recipe.items():  # the recipe layer is applied (below the tiny overrides)
        assert config[key] == (TINY[key] if key in TINY else value), key
    record = run_single(documented["model"], documented["dataset"], config_dict=config_dict, saved=False,
                        read_command_line=False)
    expected = {f"{m.lower()}@{k}" for m in recipe["metrics"] for k in recipe["topk"]}
    assert set(record["test_result"]) == expected
    assert record["targets_digest"]["test"].split(":")[0] != "0"


def test_recipe_sits_between_package_yamls_and_user_overrides():
    base = Config("HUGT", "ml-1m", read_command_line=False)
    recipe = Config("HUGT", "ml-1m", config_dict={"recipe": "hugt-ml-1m"}, read_command_line=False)
    user = Config("HUGT", "ml-1m", config_dict={"recipe": "hugt-ml-1m", "MAX_ITEM_LIST_LENGTH": 7},
                  read_command_line=False)
    assert base["MAX_ITEM_LIST_LENGTH"] == 50  # HUGT.yaml
    assert recipe["MAX_ITEM_LIST_LENGTH"] == 200 and recipe["eval_protocol"] == "hugt"
    assert user["MAX_ITEM_LIST_LENGTH"] == 7 and user["eval_protocol"] == "hugt"


@pytest.mark.parametrize("name", ["no-such-recipe", "../model/HUGT"])
def test_unknown_recipe_lists_the_recipes(name):
    with pytest.raises(ValueError, match="recipes: dgsr-amazon-beauty"):
        Config("SASRec", "synthetic", config_dict={"recipe": name}, read_command_line=False)
