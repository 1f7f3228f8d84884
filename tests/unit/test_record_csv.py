"""The recorder's CSV file handling: header on a new file, appends, refusals, torn last lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorcast.errors import UserError
from sensorcast.record import csv_header, open_csv

HEADER = csv_header(["value"])


def append(path, line: str) -> None:
    with open_csv(path, HEADER) as out:
        out.write(line)


def test_new_and_empty_files_get_the_header(tmp_path):
    new, empty = tmp_path / "new.csv", tmp_path / "empty.csv"
    empty.write_text("")
    for path in (new, empty):
        append(path, "1.0,a,2.0\n")
        assert path.read_text() == "time,sensor_id,value\n1.0,a,2.0\n"


def test_a_file_with_the_same_header_is_appended_to(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("time, sensor_id ,value\r\n1.0,a,2.0\r\n")
    append(path, "2.0,a,3.0\n")
    assert path.read_bytes().endswith(b"1.0,a,2.0\r\n2.0,a,3.0\n")


@pytest.mark.parametrize("header", ["time,sensor_id,temperature", "time,value", "time,sensor_id"])
def test_another_header_is_refused_and_the_file_left_alone(tmp_path, header):
    path = tmp_path / "r.csv"
    path.write_text(f"{header}\n1,a,2\n")
    with pytest.raises(UserError, match="header"):
        open_csv(path, HEADER)
    assert path.read_text() == f"{header}\n1,a,2\n"


def test_an_unfinished_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("time,sensor_id,value\n1.0,a,2.0\n2.0,a,3")
    append(path, "3.0,a,4.0\n")
    assert path.read_text() == "time,sensor_id,value\n1.0,a,2.0\n3.0,a,4.0\n"


def test_a_header_without_its_newline_is_completed(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("time,sensor_id,value")
    append(path, "1.0,a,2.0\n")
    assert path.read_text() == "time,sensor_id,value\n1.0,a,2.0\n"


def test_an_unwritable_place_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot write"):
        open_csv(tmp_path / "missing-dir" / "r.csv", HEADER)


def test_a_file_without_line_ends_is_refused_without_reading_it_whole(tmp_path):
    """/dev/zero (or /dev/full) read as a header never ends; a large file of one line was
    echoed whole into the error."""
    path = tmp_path / "blob.csv"
    path.write_bytes(b"x" * 5_000_000)
    with pytest.raises(UserError, match="no header line") as info:
        open_csv(path, HEADER)
    assert len(str(info.value)) < 300
    with pytest.raises(UserError, match="no header line"):
        open_csv(Path("/dev/zero"), HEADER)
