"""The local cloud's reader of CloudFormation YAML (localcloud/cloudformation/yaml_loader.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cfnlint.decode import decode

from localcloud.cloudformation import yaml_loader
from tests.conftest import REPO


def load_text(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return yaml_loader.load(path)


def test_reads_template_yaml_as_cfn_lints_decoder_does() -> None:
    decoded, problems = decode(str(REPO / "template.yaml"))
    assert not problems
    assert yaml_loader.load(REPO / "template.yaml") == json.loads(json.dumps(decoded))


def test_short_forms_become_long_forms(tmp_path: Path) -> None:
    template = load_text(
        tmp_path,
        "A: !Ref Bucket\n"
        "B: !GetAtt Role.Arn\n"
        "C: !GetAtt [Api, Outputs.Url]\n"
        "D: !GetAtt Api.Outputs.Url\n"
        "E: !Sub ['${X}-y', {X: !Ref Z}]\n"
        "F: !If [IsProd, !Equals [a, b], !Not [!Condition IsDev]]\n"
        "G: !FindInMap [M, !Ref AWS::Region, k]\n"
        "H: !Join ['', [a, b]]\n",
    )
    assert template == {
        "A": {"Ref": "Bucket"},
        "B": {"Fn::GetAtt": ["Role", "Arn"]},
        "C": {"Fn::GetAtt": ["Api", "Outputs.Url"]},
        "D": {"Fn::GetAtt": ["Api", "Outputs.Url"]},
        "E": {"Fn::Sub": ["${X}-y", {"X": {"Ref": "Z"}}]},
        "F": {
            "Fn::If": [
                "IsProd",
                {"Fn::Equals": ["a", "b"]},
                {"Fn::Not": [{"Condition": "IsDev"}]},
            ]
        },
        "G": {"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "k"]},
        "H": {"Fn::Join": ["", ["a", "b"]]},
    }


def test_dates_stay_strings_as_in_cloudformation(tmp_path: Path) -> None:
    assert load_text(tmp_path, "Version: 2012-10-17\n") == {"Version": "2012-10-17"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A: 1\nA: 2\n", "duplicate key 'A' (line 2, column 1)"),
        ("A: !GetAtt Role\n", "!GetAtt 'Role' (line 1, column 4): expected A.B"),
        ("A: [1,\n", "line 2"),
        ("- 1\n", "the top level is not a mapping"),
    ],
)
def test_what_cloudformation_would_refuse_is_one_line_naming_where(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(yaml_loader.TemplateSyntaxError) as caught:
        load_text(tmp_path, text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
