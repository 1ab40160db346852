"""User text is never markup, errors are one bounded line, JSON is never NaN."""

import json
import math

from rich.table import Table

from snnas.cli._terminal import MAX_ERROR, Terminal, format_count, json_safe, styled


def test_markup_and_emoji_codes_print_as_written(capsys):
    terminal = Terminal()
    terminal.info("space x[/y] [bold]z[/bold] :smile:")
    terminal.warn("a [/red] warning")
    terminal.error("bad [network] table [/]")
    table = Table("label[/x]", title="title [/y]")
    table.add_row("[/z] :smile:")
    terminal.print(table)
    terminal.info(styled(("name[/x]", "bold"), " desc [/y]"))
    out, err = capsys.readouterr()
    assert "space x[/y] [bold]z[/bold] :smile:" in out
    assert "label[/x]" in out and "title [/y]" in out and "[/z] :smile:" in out
    assert "name[/x] desc [/y]" in out
    assert "warning: a [/red] warning" in err
    assert "error: bad [network] table [/]" in err


def test_control_characters_are_escaped(capsys):
    terminal = Terminal()
    terminal.info("a\x1b[2Jb\x00c\u202e")
    table = Table("file")
    table.add_row("evil\x1b]0;title\x07.toml")
    terminal.print(table)
    out, _ = capsys.readouterr()
    assert "\x1b" not in out and "\x00" not in out and "\u202e" not in out
    assert "a\\x1b[2Jb\\x00c\\u202e" in out
    assert "\\x1b]0;title\\x07.toml" in out


def test_error_is_one_bounded_line(capsys):
    Terminal().error("first\nsecond\r\n" + "x" * 10_000)
    _, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert err.startswith("error: first second x")
    assert len(err) < MAX_ERROR + 100


def test_json_never_emits_nan(capsys):
    Terminal().json({"loss": math.nan, "xs": [math.inf, 1.0], "n": 3})
    out, _ = capsys.readouterr()
    assert json.loads(out) == {"loss": None, "xs": [None, 1.0], "n": 3}
    assert "NaN" not in out and "Infinity" not in out
    assert json_safe((1.0, -math.inf)) == [1.0, None]


def test_format_count_handles_astronomical_sizes():
    assert format_count(2641807540224) == "2.64e+12"
    assert format_count(24**1000) == "1.63e+1380"  # log10(24) = 1.380211
