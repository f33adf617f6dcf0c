"""``server.control``, ``server.api_token``, ``server.metrics`` and ``server.health`` (issue 12):
where the control API listens, its token, and who may read the monitoring endpoints; checked
when the file is read, each error with its line and fix, the token never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from runnerscale.config import ConfigError, check_config, load_config, load_control_config
from runnerscale.config.control import TcpControl, UnixControl, control_address
from tests.test_config import ENV, edit, errors_of, only, parse

LISTEN = "  listen: 127.0.0.1:8787\n"
TOKEN = "rs-api-token-0123456789abcdef"


def server(*lines: str) -> str:
    return edit(LISTEN, LISTEN + "".join(f"  {line}\n" for line in lines))


def test_by_default_a_unix_socket_in_the_state_directory_and_everything_open() -> None:
    config = parse(server())
    assert config.server.control is None
    assert control_address(config.server.control, config.state_dir) == UnixControl(
        Path("/var/tmp/runnerscale/control.sock")
    )
    assert (config.server.api_token, config.server.metrics, config.server.health) == (
        None,
        "open",
        "open",
    )


def test_a_unix_path_is_made_absolute_like_every_path_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rs.yaml"
    path.write_text(server("control: unix://run/control.sock"))
    config = load_config(path, env=ENV)
    assert config.server.control == f"unix://{tmp_path}/run/control.sock"
    home = parse(server("control: unix://~/control.sock"))
    assert home.server.control == "unix:///home/tester/control.sock"


def test_a_tcp_listener_and_its_token_from_the_environment() -> None:
    config = parse(
        server("control: tcp://[::1]:8788", "api_token: ${RS_API_TOKEN}", "metrics: token"),
        {**ENV, "RS_API_TOKEN": f" {TOKEN}\n"},
    )
    assert control_address(config.server.control, config.state_dir) == TcpControl("::1", 8788)
    assert config.server.api_token is not None
    assert config.server.api_token.get_secret_value() == TOKEN  # whitespace dropped
    assert TOKEN not in repr(config)
    assert config.server.metrics == "token"


@pytest.mark.parametrize(
    ("line", "message", "hint"),
    [
        ("control: /run/control.sock", "is not a unix:// or tcp:// address", "unix:///run/"),
        ("control: http://127.0.0.1:8788", "is not a unix:// or tcp:// address", "tcp://"),
        ("control: tcp://127.0.0.1", "is not tcp://HOST:PORT", "tcp://127.0.0.1:8788"),
        ("control: tcp://::1:8788", "is not tcp://HOST:PORT", "[::1]:8788"),
        ("control: tcp://127.0.0.1:0", "needs a fixed port", "tcp://127.0.0.1:8788"),
        ("metrics: closed", "must be one of open, token or off", "set metrics to one of"),
        ("metrics: 1", "must be one of open, token or off", "set metrics to one of"),
        ("health: public", "must be one of open, token or off", "set health to one of"),
    ],
)
def test_a_bad_setting_says_what_to_write(line: str, message: str, hint: str) -> None:
    problem = only(errors_of(server(line)))
    assert problem.line == 9
    assert problem.path == f"server.{line.split(':', maxsplit=1)[0]}"
    assert message in problem.message
    assert hint in problem.hint


@pytest.mark.parametrize("token", ["short-token", "a token with spaces in it"])
def test_a_weak_api_token_is_refused_without_being_shown(token: str) -> None:
    error = errors_of(server("api_token: ${RS_API_TOKEN}"), {**ENV, "RS_API_TOKEN": token})
    problem = only(error)
    assert problem.path == "server.api_token"
    assert "at least 16 characters" in problem.message
    assert "openssl rand -hex 32" in problem.hint
    assert token not in str(error)
    inline = errors_of(server(f"api_token: {token}"))
    assert token not in str(inline)


def test_a_control_api_off_loopback_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "rs.yaml"
    path.write_text(server("control: tcp://0.0.0.0:8788"))
    _, warnings = check_config(path, env=ENV)
    [warning] = warnings
    assert (warning.line, warning.path) == (9, "server.control")
    assert "crosses the network unencrypted" in warning.message
    path.write_text(server("control: tcp://127.0.0.1:8788"))
    assert check_config(path, env=ENV)[1] == []


@pytest.mark.parametrize(("written", "meant"), [("off", "off"), ('"off"', "off"), ("on", "open")])
def test_off_written_bare_is_off_though_yaml_reads_it_as_false(written: str, meant: str) -> None:
    config = parse(server(f"metrics: {written}", f"health: {written}"))
    assert (config.server.metrics, config.server.health) == (meant, meant)


def test_the_control_commands_read_the_control_settings_without_the_github_secrets(
    tmp_path: Path,
) -> None:
    """``status`` and ``scale`` need the control API's address and its credential, not the
    daemon's GitHub token and webhook secret (issue 13, 4); what they read is still checked."""
    path = tmp_path / "rs.yaml"
    path.write_text(server("control: tcp://127.0.0.1:8788", "api_token: ${RS_API_TOKEN}"))
    config = load_control_config(path, env={"RS_API_TOKEN": TOKEN, "HOME": "/home/tester"})
    assert control_address(config.server.control, config.state_dir) == TcpControl("127.0.0.1", 8788)
    assert config.server.api_token is not None
    assert config.server.api_token.get_secret_value() == TOKEN
    with pytest.raises(ConfigError) as caught:
        load_control_config(path, env={"HOME": "/home/tester"})
    [problem] = caught.value.problems
    assert problem.path == "server.api_token"
    assert "RS_API_TOKEN is not set" in problem.message
    path.write_text(server("control: tcp://127.0.0.1:8788", "metrics: sometimes"))
    with pytest.raises(ConfigError) as caught:
        load_control_config(path, env={})
    assert [problem.path for problem in caught.value.problems] == ["server.metrics"]
