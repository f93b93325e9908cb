"""Validation of atomic files: every kind of malformed file fails with one line naming the file,
the line number and the field; a well-formed dataset (and every converter's output) passes."""

import os
import re

import pytest

from recbole_ext.data.validate import AtomicFileError, validate_atomic_dataset

INTER = "user_id:token\titem_id:token\ttimestamp:float\ttags:token_seq\n" \
        "u1\ti1\t1.5\ta b\n" \
        "u1\ti2\t2\t\n" \
        "u2\ti1\t3e2\tc\n"
ITEM = "item_id:token\tprice:float\tvector:float_seq\ni1\t9.5\t0.1 0.2\ni2\t\t1\n"


def write_dataset(tmp_path, name="d", **files):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    for suffix, text in files.items():
        mode = "wb" if isinstance(text, bytes) else "w"
        with open(folder / f"{name}.{suffix}", mode, **({} if mode == "wb" else {"newline": ""})) as handle:
            handle.write(text)
    return str(folder)


def error_of(tmp_path, **files):
    folder = write_dataset(tmp_path, **files)
    with pytest.raises(AtomicFileError) as error:
        validate_atomic_dataset(folder, "d")
    message = str(error.value)
    assert "\n" not in message
    return message


def where(message):
    """``(file name, line, field)`` of ``FILE:LINE: field 'NAME': ...`` (field None if absent)."""
    match = re.match(r"(.+?):(\d+): (?:field '([^']*)': )?", message)
    assert match, message
    return os.path.basename(match.group(1)), int(match.group(2)), match.group(3)


def test_well_formed_dataset_passes(tmp_path):
    folder = write_dataset(tmp_path, inter=INTER, item=ITEM,
                           query="user_id:token\ttimestamp:float\tquery:token_seq\nu2\t2.5\tred shoes\n")
    validate_atomic_dataset(folder, "d")  # raises nothing
    # a non-atomic file next to them is ignored
    (tmp_path / "d" / "d.yaml").write_text("not: atomic\tat all\n")
    validate_atomic_dataset(folder, "d")


def test_too_few_columns_names_the_missing_field(tmp_path):
    message = error_of(tmp_path, inter=INTER + "u3\ti2\n")
    assert where(message) == ("d.inter", 5, "timestamp")
    assert "2 values" in message and "4 fields" in message


def test_too_many_columns(tmp_path):
    bad = INTER.replace("u1\ti2\t2\t\n", "u1\ti2\t2\tx\textra\n")
    assert where(error_of(tmp_path, inter=bad)) == ("d.inter", 3, "tags")


def test_bad_float_value(tmp_path):
    bad = INTER.replace("u2\ti1\t3e2", "u2\ti1\tyesterday")
    message = error_of(tmp_path, inter=bad)
    assert where(message) == ("d.inter", 4, "timestamp") and "'yesterday' is not a number" in message


def test_bad_float_seq_element_in_side_file(tmp_path):
    bad = ITEM.replace("i2\t\t1", "i2\t\t1 two")
    message = error_of(tmp_path, inter=INTER, item=bad)
    assert where(message) == ("d.item", 3, "vector") and "'two'" in message


def test_duplicated_header_field(tmp_path):
    bad = "user_id:token\titem_id:token\tuser_id:token\nu\ti\tu\n"
    message = error_of(tmp_path, inter=bad)
    assert where(message) == ("d.inter", 1, "user_id") and "duplicated" in message


def test_unknown_type_and_malformed_header_cell(tmp_path):
    assert where(error_of(tmp_path, inter="user_id:token\tscore:int\nu\t1\n")) == ("d.inter", 1, "score")
    assert where(error_of(tmp_path, inter="user_id:token\tscore\nu\t1\n")) == ("d.inter", 1, "score")


def test_empty_file_and_header_only_file(tmp_path):
    message = error_of(tmp_path, inter=INTER, item="")
    assert where(message) == ("d.item", 1, None) and "empty file" in message
    message = error_of(tmp_path, inter="user_id:token\titem_id:token\n")
    assert where(message) == ("d.inter", 2, None) and "no data rows" in message


def test_windows_line_endings(tmp_path):
    message = error_of(tmp_path, inter=INTER.replace("\n", "\r\n"))
    assert where(message) == ("d.inter", 1, None) and "\\r\\n" in message


def test_side_file_whose_ids_never_match(tmp_path):
    item = "item_id:token\tprice:float\nI-0001\t1\nI-0002\t2\n"
    message = error_of(tmp_path, inter=INTER, item=item)
    assert where(message) == ("d.item", 2, "item_id") and "none of its 2 ids occurs in d.inter" in message
    os.remove(tmp_path / "d" / "d.item")
    query = "user_id:token\ttimestamp:float\tquery:token_seq\nnobody\t1\tred\n"
    assert where(error_of(tmp_path, inter=INTER, query=query)) == ("d.query", 2, "user_id")


def test_side_file_without_a_shared_id_field(tmp_path):
    message = error_of(tmp_path, inter=INTER, user="uid:token\tage:float\nu1\t3\n")
    assert where(message) == ("d.user", 1, "uid") and "in common with d.inter" in message


def test_leading_double_quote(tmp_path):
    bad = INTER.replace("u2\ti1\t3e2\tc", 'u2\ti1\t3e2\t"c d')
    message = error_of(tmp_path, inter=bad)
    assert where(message) == ("d.inter", 4, "tags") and "double quote" in message


def test_blank_lines_are_skipped_but_counted(tmp_path):
    # pandas skips blank lines, so they are allowed; line numbers still count them
    bad = INTER + "\n\nu3\tx\n"
    assert where(error_of(tmp_path, inter=bad)) == ("d.inter", 7, "timestamp")


def test_missing_interaction_file_and_folder(tmp_path):
    message = error_of(tmp_path, item=ITEM)
    assert "d.inter" in message and "missing interaction file" in message
    with pytest.raises(AtomicFileError, match="no such dataset folder"):
        validate_atomic_dataset(str(tmp_path / "nowhere"), "nowhere")


def test_not_utf8(tmp_path):
    message = error_of(tmp_path, inter=INTER.encode() + "u9\tcaf\xe9\t1\tx\n".encode("latin-1"))
    assert where(message) == ("d.inter", 5, None) and "UTF-8" in message


def test_multi_character_separator(tmp_path):
    folder = write_dataset(tmp_path, inter="user_id:token::item_id:token::t:float\nu::i::1\n\nu::j::x\n")
    with pytest.raises(AtomicFileError) as error:
        validate_atomic_dataset(folder, "d", field_separator="::")
    assert where(str(error.value)) == ("d.inter", 4, "t")
    folder = write_dataset(tmp_path, name="e", inter="user_id:token::item_id:token::t:float\nu::i::1\nu::j\n")
    with pytest.raises(AtomicFileError) as error:
        validate_atomic_dataset(folder, "e", field_separator="::")
    assert where(str(error.value)) == ("e.inter", 3, "t")
