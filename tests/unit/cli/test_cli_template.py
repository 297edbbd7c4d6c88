"""The Go-template interpreter behind ``--format``."""

from __future__ import annotations

from typing import Any

import pytest

from berth.cli.template import TemplateError, go_float, go_str, parse, render

DATA: dict[str, Any] = {
    "Id": "abc123",
    "Name": "/web",
    "Args": ["-f", "-p", "80"],
    "State": {"Status": "running", "Running": True, "ExitCode": 0, "Pid": 42},
    "Config": {"Labels": {"k": "v", "a.b": "c"}, "Entrypoint": None, "Env": ["A=1", "B=2"],
               "OnBuild": ['RUN echo "x" >> /log && test 1 -lt 2']},
    "Mounts": [{"Source": "/s1", "Destination": "/d1"}, {"Source": "/s2", "Destination": "/d2"}],
    "Count": 3,
    "Ratio": 0.5,
    "Empty": "",
}

CASES = [
    ("{{.Id}}", "abc123"),
    ("{{.Name}}", "/web"),
    ("{{.State.Status}}", "running"),
    ("{{.State.Running}}", "true"),
    ("{{.State.Pid}}", "42"),
    ("{{json .State}}", '{"Status":"running","Running":true,"ExitCode":0,"Pid":42}'),
    ("{{json .Config.Labels}}", '{"k":"v","a.b":"c"}'),
    ("{{json .Config.Entrypoint}}", "null"),
    # the docker CLI turns Go's HTML escaping off (case 011: docker inspect of Config.OnBuild)
    ("{{json .Config.OnBuild}}", '["RUN echo \\"x\\" >> /log && test 1 -lt 2"]'),
    ("{{range .Mounts}}{{.Source}}{{end}}", "/s1/s2"),
    ("{{range $i, $m := .Mounts}}{{$i}}:{{$m.Destination}} {{end}}", "0:/d1 1:/d2 "),
    ("{{range .Nothing}}x{{else}}none{{end}}", "none"),
    ('{{index .Config.Labels "k"}}', "v"),
    ('{{index .Config.Labels "a.b"}}', "c"),
    ("{{index .Args 1}}", "-p"),
    ('{{printf "%s" .Name}}', "/web"),
    ('{{printf "%s=%d %q %v" .Name .Count .Id .Args}}', '/web=3 "abc123" [-f -p 80]'),
    ('{{printf "%5s|%-4d|" "ab" 7}}', "   ab|7   |"),
    ("{{lower .State.Status | upper}}", "RUNNING"),
    ('{{upper "x"}}{{lower "Y"}}{{title "hello world"}}', "XyHello World"),
    ('{{join .Args ","}}', "-f,-p,80"),
    ('{{split "a,b" ","}}', "[a b]"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .Empty}}x{{else if .Count}}count{{else}}none{{end}}", "count"),
    ('{{if eq .State.Status "exited" "running"}}yes{{end}}', "yes"),
    ("{{if and .State.Running (gt .Count 2)}}ok{{end}}", "ok"),
    ("{{if or .Empty (not .State.Running)}}a{{else}}b{{end}}", "b"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{with .Empty}}x{{else}}empty{{end}}", "empty"),
    ("{{$n := .Name}}{{$n}}", "/web"),
    ("{{len .Args}} {{len .Config.Labels}}", "3 2"),
    ("{{.Missing}}", "<no value>"),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.Args}}", "[-f -p 80]"),
    ("{{.Config.Labels}}", "map[a.b:c k:v]"),
    ("{{.Ratio}}", "0.5"),
    ("a {{- .Count -}} b", "a3b"),
    ("{{/* a comment */}}x", "x"),
    ("{{(index .Mounts 0).Source}}", "/s1"),
    ('{{truncate .Id 3}}|{{pad "x" 1 2}}|', "abc| x  |"),
    ("{{.Id | printf \"%s!\"}}", "abc123!"),
    ("{{range .Config.Env}}{{println .}}{{end}}", "A=1\nB=2\n"),
    ("{{`raw {{ text`}}", "raw {{ text"),
    ("{{html \"<a>\"}}", "&lt;a&gt;"),
]


@pytest.mark.parametrize("fmt, expected", CASES, ids=[c[0] for c in CASES])
def test_template(fmt: str, expected: str) -> None:
    assert parse(fmt).execute(DATA) == expected


def test_tab_escape_from_the_command_line() -> None:
    assert render(r"{{.Id}}\t{{.Name}}", DATA) == "abc123\t/web"


@pytest.mark.parametrize("fmt", [
    "{{.Id", "{{if .Id}}x", "{{end}}", "{{nosuch .Id}}", "{{range .Id}}{{end}}",
    "{{.Id.Sub.Deeper}}x{{.Nothing.Deeper}}",
])
def test_template_errors(fmt: str) -> None:
    with pytest.raises(TemplateError):
        parse(fmt).execute(DATA)


def test_callable_fields_take_arguments() -> None:
    labels = {"com.example": "1"}
    row = {"Label": lambda key: labels.get(key, "")}
    assert parse('{{.Label "com.example"}}').execute(row) == "1"


@pytest.mark.parametrize("value, text", [
    (1.5, "1.5"), (100.0, "100"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
    (0.0001, "0.0001"), (0.00001, "1e-05"), (-2.25, "-2.25"), (0.0, "0"),
])
def test_go_float(value: float, text: str) -> None:
    assert go_float(value) == text


def test_go_str_of_nested_values() -> None:
    assert go_str({"b": [1, True], "a": None}) == "map[a:<nil> b:[1 true]]"


# -- missing keys and field errors, as the docker CLI's inspect reports them ------------------

@pytest.mark.parametrize("fmt, mode, expected", [
    ("{{.Missing}}", "invalid", "<no value>"),
    ("{{.Config.Labels.nope}}", "invalid", "<no value>"),
    ("{{.Name}}", "error", "/web"),
])
def test_missing_key_modes(fmt: str, mode: str, expected: str) -> None:
    assert parse(fmt).execute(DATA, mode) == expected


@pytest.mark.parametrize("fmt, message", [
    # Go places a chain at its second field and a variable's chain at its first field
    ("{{.Bogus}}", 'template: :1:2: executing "" at <.Bogus>: map has no entry for key "Bogus"'),
    ("{{.State.Bogus}}",
     'template: :1:8: executing "" at <.State.Bogus>: map has no entry for key "Bogus"'),
    ("{{.Name}} {{.Bogus}}",
     'template: :1:12: executing "" at <.Bogus>: map has no entry for key "Bogus"'),
    ("{{$s := .State}}{{$s.Nope}}",
     'template: :1:20: executing "" at <$s.Nope>: map has no entry for key "Nope"'),
    ("{{.Name}}\n  {{.State.Pid.X}}",
     'template: :2:10: executing "" at <.State.Pid.X>: can\'t evaluate field X in type '
     "interface {}"),
    ("{{if .State}}{{.State.Nope}}{{end}}",
     'template: :1:21: executing "" at <.State.Nope>: map has no entry for key "Nope"'),
    ("{{- .Bogus}}", 'template: :1:4: executing "" at <.Bogus>: map has no entry for key "Bogus"'),
])
def test_missing_key_error_names_the_place(fmt: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        parse(fmt).execute(DATA, "error")
    assert str(err.value) == message


def test_struct_mode_knows_maps_and_omitted_fields() -> None:
    from berth.cli.template import GoMap

    data = {"Config": {"Labels": GoMap({"k": "v"})}}
    tmpl = parse("{{.Config.Labels.nope}}|{{.Config.StopSignal}}")
    assert tmpl.execute(data, "struct", {"StopSignal": ""}) == "<no value>|"
    with pytest.raises(TemplateError, match="can't evaluate field Bogus"):
        parse("{{.Config.Bogus}}").execute(data, "struct", {})
