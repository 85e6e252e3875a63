"""Finding the image an annotation names: written path, file name anywhere, letter case, ambiguity."""
from __future__ import annotations

import pytest

from fixtures_images import write_image
from stainfree.data.sources.common import SourceError
from stainfree.data.sources.locate import ImageFinder


def test_written_path_then_file_name_then_case(tmp_path) -> None:
    write_image(tmp_path / "a" / "one.png")
    write_image(tmp_path / "b" / "Two.PNG")
    write_image(tmp_path / ".hidden" / "three.png")
    finder = ImageFinder(tmp_path)
    assert finder.find(["a/one.png"]) == tmp_path / "a" / "one.png"
    assert finder.find(["C:\\Users\\x\\one.png"]) == tmp_path / "a" / "one.png"  # by name under the root
    assert finder.find(["/elsewhere/two.png"]) == tmp_path / "b" / "Two.PNG"  # ignoring case
    assert finder.find(["a/one"]) == tmp_path / "a" / "one.png"  # written without its extension
    assert finder.find(["three.png"]) is None  # hidden folders are not searched
    assert finder.find([None, "", "missing.png"]) is None


def test_a_name_matching_two_files_is_an_error_unless_the_folder_tells(tmp_path) -> None:
    write_image(tmp_path / "plate1" / "f.png")
    write_image(tmp_path / "plate2" / "f.png")
    finder = ImageFinder(tmp_path)
    assert finder.find(["plate2/f.png"]) == tmp_path / "plate2" / "f.png"
    assert finder.find(["/old/disk/f.png"], hint="plate1") == tmp_path / "plate1" / "f.png"
    with pytest.raises(SourceError, match=r"the name 'f.png' matches 2 images \(plate1/f.png, plate2/f.png\)"):
        finder.find(["/old/disk/f.png"])
